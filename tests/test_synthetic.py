"""The built-in dataset: UCSDped2 layout, deterministic, with masks exactly where anomalies are."""
import hashlib

import cv2
import numpy as np

from utils.datasets import open_split
from utils.datasets import generate_synthetic as generate


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.tif")) + sorted(root.rglob("*.bmp")):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_reader_layout(tmp_path):
    a = generate(tmp_path / "a", seed=5, n_train=1, n_test=3, n_frames=30, progress=False)
    b = generate(tmp_path / "b", seed=5, n_train=1, n_test=3, n_frames=30, progress=False)
    assert _digest(a) == _digest(b)
    assert not (tmp_path / "a.partial").exists()
    train, test = open_split(a, "UCSDped2", "train"), open_split(a, "UCSDped2", "test")
    assert len(train) == 30 and len(test) == 90 and test.video_names == ["Test001", "Test002", "Test003"]
    # every test video holds one anomalous event (fast, cart, wrong way) that starts after its first frames
    for video in (1, 2, 3):
        labels = test.labels[test.frame_video_idx == video]
        assert labels[:5].sum() == 0 and labels.sum() > 5
    frame = cv2.imread(str(test.frame_paths[80]), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (160, 240) and frame.dtype == np.uint8  # grey, like UCSDped2


def test_default_size_is_small(tmp_path):
    root = generate(tmp_path / "synthetic", progress=False)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 50e6
    assert generate(root) == root  # complete: not generated again
