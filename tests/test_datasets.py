"""Dataset readers on tiny datasets written in each benchmark's layout (docs/method.md §1)."""
import cv2
import numpy as np
import pytest
from scipy.io import savemat

from utils.datasets import open_split
from utils.infra.errors import VECError


def _frames(folder, n, ext, height=12, width=16, start=0):
    folder.mkdir(parents=True)
    for t in range(n):
        cv2.imwrite(str(folder / f"{t + start:03d}{ext}"), np.full((height, width), 10 * t, np.uint8))


def test_ucsd_layout(tmp_path):
    _frames(tmp_path / "Train" / "Train002", 3, ".tif")
    _frames(tmp_path / "Train" / "Train001", 4, ".tif")
    _frames(tmp_path / "Test" / "Test001", 3, ".tif")
    _frames(tmp_path / "Test" / "Test002", 2, ".tif")
    for name, anomalous in (("Test001_gt", [0, 1, 1]), ("Test002_gt", [1, 0])):
        (tmp_path / "Test" / name).mkdir()
        for t, a in enumerate(anomalous):
            mask = np.zeros((12, 16), np.uint8)
            mask[2:4, 3:5] = 255 * a
            cv2.imwrite(str(tmp_path / "Test" / name / f"{t:03d}.bmp"), mask)
    train = open_split(tmp_path, "UCSDped2", "train")
    assert [p.parent.name for p in train.frame_paths] == ["Train001"] * 4 + ["Train002"] * 3
    assert train.frame_video_idx.tolist() == [1, 1, 1, 1, 2, 2, 2] and train.labels is None
    assert train.read_frame(1).shape == (12, 16, 3)  # BGR even for grey files
    test = open_split(tmp_path, "UCSDped2", "test")
    assert test.video_names == ["Test001", "Test002"]
    assert test.labels.tolist() == [0, 1, 1, 1, 0]


def test_avenue_layout(tmp_path):
    _frames(tmp_path / "training" / "frames" / "01", 3, ".jpg")
    _frames(tmp_path / "testing" / "frames" / "01", 2, ".jpg")
    _frames(tmp_path / "testing" / "frames" / "02", 3, ".jpg")
    gt = tmp_path / "ground_truth_demo" / "testing_label_mask"
    gt.mkdir(parents=True)
    for number, anomalous in ((1, [0, 1]), (2, [1, 0, 0])):
        masks = np.empty((1, len(anomalous)), dtype=object)
        for t, a in enumerate(anomalous):
            masks[0, t] = np.full((12, 16), a, np.uint8)
        savemat(gt / f"{number}_label.mat", {"volLabel": masks})
    assert len(open_split(tmp_path, "avenue", "train")) == 3
    test = open_split(tmp_path, "avenue", "test")
    assert test.frame_video_idx.tolist() == [1, 1, 2, 2, 2]
    assert test.labels.tolist() == [0, 1, 1, 0, 0]


def test_shanghaitech_layout(tmp_path):
    _frames(tmp_path / "training" / "videosFrame" / "01_001", 3, ".jpg")
    _frames(tmp_path / "Testing" / "frames_part1" / "01_0014", 2, ".jpg")
    _frames(tmp_path / "Testing" / "frames_part2" / "12_0152", 3, ".jpg")
    gt = tmp_path / "Testing" / "test_frame_mask"
    gt.mkdir(parents=True)
    np.save(gt / "01_0014.npy", np.array([0, 1]))
    np.save(gt / "12_0152.npy", np.array([1, 1, 0]))
    test = open_split(tmp_path, "ShanghaiTech", "test")
    assert test.video_names == ["01_0014", "12_0152"]
    assert test.labels.tolist() == [0, 1, 1, 1, 0]


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(VECError, match="not found"):
        open_split(tmp_path / "nowhere", "UCSDped2", "train")


def test_ground_truth_count_must_match(tmp_path):
    _frames(tmp_path / "Test" / "Test001", 3, ".tif")
    (tmp_path / "Test" / "Test001_gt").mkdir()
    cv2.imwrite(str(tmp_path / "Test" / "Test001_gt" / "000.bmp"), np.zeros((12, 16), np.uint8))
    with pytest.raises(VECError, match="1 ground-truth masks for 3 frames"):
        open_split(tmp_path, "UCSDped2", "test")
