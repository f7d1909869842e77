"""Box steps equal the reference's outputs exactly (golden boxes.npz)."""
from pathlib import Path

import numpy as np
import pytest

from utils.foreground import filter_detections, frame_box, motion_boxes, patch_grid, remove_covered

GOLDEN = np.load(Path(__file__).parent / "data" / "boxes.npz")
# docs/method.md §3 thresholds: score_thr, min_area, cover_thr, area_thr, binary_thr, extend, blur
PARAMS = {"UCSDped2": (0.5, 100, 0.6, 100, 18, 2, 3), "avenue": (0.25, 1600, 0.6, 1600, 18, 2, 5),
          "ShanghaiTech": (0.5, 64, 0.65, 64, 15, 2, 5)}


@pytest.mark.parity
@pytest.mark.parametrize("ds", sorted(PARAMS))
def test_box_pipeline_matches_reference(ds):
    score_thr, min_area, cover_thr, area_thr, binary_thr, extend, blur = PARAMS[ds]
    g = {k.split("__")[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith(ds + "__")}
    ap = filter_detections(g["detections"], score_thr, min_area)
    np.testing.assert_array_equal(ap, g["ap_bboxes"])
    kept = remove_covered(ap, cover_thr)
    np.testing.assert_array_equal(kept, g["kept_bboxes"])
    np.testing.assert_array_equal(remove_covered(g["crowd"], cover_thr), g["crowd_kept"])
    motion = motion_boxes(g["frames"], kept, area_thr, binary_thr, extend, blur)
    np.testing.assert_array_equal(motion, g["mt_bboxes"])


def test_uint8_wrap_is_reproduced_and_can_be_fixed():
    frames = np.zeros((3, 40, 40, 3), np.uint8)
    frames[1, 10:30, 10:30] = 130  # two differences of 130 sum to 260, which wraps to 4
    wrapped = motion_boxes(frames, np.zeros((0, 4)), 16, 18, 2, 1)
    fixed = motion_boxes(frames, np.zeros((0, 4)), 16, 18, 2, 1, wrap_uint8=False)
    assert len(wrapped) == 0
    np.testing.assert_array_equal(fixed, [[8, 8, 32, 32]])


def test_appearance_boxes_are_masked_out_of_motion():
    frames = np.zeros((3, 60, 60, 3), np.uint8)
    frames[1, 10:30, 10:30] = 100
    assert len(motion_boxes(frames, np.zeros((0, 4)), 16, 18, 2, 1)) == 1
    assert len(motion_boxes(frames, np.array([[10.0, 10.0, 29.0, 29.0]]), 16, 18, 2, 1)) == 0


def test_grid_and_frame_boxes():
    grid = patch_grid(240, 360, 3, 4)
    assert grid.shape == (12, 4)
    np.testing.assert_allclose(grid[0], [0, 0, 90, 80])
    np.testing.assert_allclose(grid[1], [0, 239 / 3, 90, 239 / 3 + 80])  # column-major order
    np.testing.assert_array_equal(frame_box(240, 360), [[0, 0, 360, 240]])
