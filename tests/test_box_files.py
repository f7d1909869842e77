"""Box files: the reference's own files load; ours round-trip; nothing but arrays is unpickled."""
from pathlib import Path

import numpy as np
import pytest

from utils.foreground import box_file_path, compute_split_boxes, frame_boxes, load_box_file, save_box_file
from utils.config import BoxParams
from utils.datasets import open_split
from utils.infra.errors import VECError

REFERENCE = Path(__file__).parent / "data" / "UCSDped2_bboxes_test_obj_det_with_motion.npy"
PARAMS = BoxParams(0.5, 100, 0.6, 100, 18, 2, 3)


def test_reference_box_file_loads():
    boxes = load_box_file(REFERENCE, 2010)  # UCSDped2 has 2010 test frames
    assert len(boxes) == 2010 and all(b.ndim == 2 and b.shape[1] == 4 for b in boxes)
    assert boxes[0].shape == (19, 4)
    np.testing.assert_allclose(boxes[0][0], [221.65509, 121.408516, 230.50494, 148.2827], rtol=1e-6)


def test_frame_count_is_checked():
    with pytest.raises(VECError, match="2010 frames but the split has 2000"):
        load_box_file(REFERENCE, 2000)


def test_round_trip_keeps_dtypes_and_empty_frames(tmp_path):
    boxes = [np.zeros((0, 4), np.float32), np.array([[1.5, 2, 3, 4]], np.float32), np.array([[0, 0, 9, 9]] * 2, float)]
    save_box_file(tmp_path / "b.npy", boxes)
    loaded = load_box_file(tmp_path / "b.npy", 3)
    assert [b.shape for b in loaded] == [(0, 4), (1, 4), (2, 4)]
    assert loaded[1].dtype == np.float32 and np.array_equal(loaded[2], boxes[2])


def test_saving_removes_a_killed_runs_half_written_box_file(tmp_path):
    stale = [tmp_path / ".b.npy.k1ll3d_.tmp", tmp_path / ".b.json.k1ll3d_.tmp"]
    kept = tmp_path / ".other.npy.k1ll3d_.tmp"
    for path in (*stale, kept):
        path.write_bytes(b"half written")
    save_box_file(tmp_path / "b.npy", [np.zeros((0, 4), np.float32)], {"mode": "test"})
    assert not any(path.exists() for path in stale) and kept.exists()
    assert len(load_box_file(tmp_path / "b.npy", 1)) == 1


def test_file_with_other_pickled_objects_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("should never run",))

    array = np.empty(1, dtype=object)
    array[0] = Payload()
    with open(tmp_path / "evil.npy", "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=True)
    with pytest.raises(VECError, match="not allowed"):
        load_box_file(tmp_path / "evil.npy")


def test_modes_on_real_frames(small_synthetic):
    cfg = small_synthetic
    split = open_split(cfg.dataset_dir, "UCSDped2", "test")
    frames = np.stack([split.read_frame(j) for j in split.context(10, 1, "hard")])
    assert frame_boxes("frame", frames, None, PARAMS).tolist() == [[0, 0, 240, 160]]
    assert frame_boxes("simple_patch", frames, None, PARAMS).shape == (12 + 48, 4)
    motion_only = frame_boxes("obj_det_with_motion", frames, None, PARAMS)
    assert len(motion_only) > 0 and motion_only.dtype == np.float64
    detections = np.hstack([motion_only[:1].astype(np.float32) + [0, 0, 4, 4], [[0.9]]]).astype(np.float32)
    with_detector = frame_boxes("obj_det_with_motion", frames, detections, PARAMS)
    np.testing.assert_array_equal(with_detector[0], detections[0, :4])  # appearance boxes come first
    assert len(frame_boxes("obj_det", frames, detections, PARAMS)) == 1


def test_boxes_of_a_split_use_each_frame_once(small_synthetic):
    cfg = small_synthetic
    split = open_split(cfg.dataset_dir, "UCSDped2", "train")
    calls = []

    def detector(frames):  # a real callable: records what it is given
        calls.append(len(frames))
        return [np.zeros((0, 5), np.float32) for _ in frames]

    boxes = compute_split_boxes(split, "obj_det_with_motion", PARAMS, detector, batch_size=5, progress=False)
    assert len(boxes) == len(split) and sum(calls) == len(split) and max(calls) == 5
    assert box_file_path(cfg.dataset_dir, "train", "obj_det").name == "bboxes_train_obj_det.npy"
