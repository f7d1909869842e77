"""Cubes: the reference's cropping (golden) and the memory-mapped store built from real files."""
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PAPER_CUBES
from utils.foreground import compute_split_boxes
from utils.cubes import CubeStore, block_indices, build_cubes, crop_cubes
from utils.datasets import open_split
from utils.flow.store import flow_file_path, read_flow

GOLDEN = np.load(Path(__file__).parent / "data" / "cubes.npz")


@pytest.mark.parity
def test_crop_cubes_matches_reference_get_foreground():
    raw = crop_cubes(GOLDEN["raw"], GOLDEN["boxes"], patch_size=32)
    assert raw.shape == (5, 5, 3, 32, 32) and raw.dtype == np.uint8
    assert np.abs(raw.astype(int) - GOLDEN["raw_cubes"].astype(int)).max() <= 1
    flow = crop_cubes(GOLDEN["flow"], GOLDEN["boxes"], patch_size=32)
    assert flow.dtype == np.float32
    np.testing.assert_allclose(flow, GOLDEN["flow_cubes"], atol=1e-5, rtol=0)


def test_empty_box_gives_zero_cube():
    stack = np.full((5, 2, 20, 30), 7.0, np.float32)
    cubes = crop_cubes(stack, np.array([[4.0, 4.0, 4.0, 10.0], [0.2, 0.2, 8.0, 9.0]]), patch_size=8)
    assert not cubes[0].any() and np.all(cubes[1] == 7.0)


def test_block_of_a_box_is_the_block_of_its_centre():
    assert block_indices([0, 0, 10, 10], 120, 180, 1, 2, 2) == [(0, 0)]
    assert block_indices([170, 110, 200, 140], 120, 180, 1, 2, 2) == [(1, 1)]
    assert block_indices([0, 0, 360, 240], 120, 180, 1, 2, 2) == [(1, 1)]  # centre on the border: clamped
    # mode 5 adds the edge midpoints, each taken halfway to the centre
    assert block_indices([170, 110, 200, 140], 120, 180, 5, 2, 2) == [(1, 1), (0, 1), (1, 0)]


def test_store_holds_the_cubes_of_moving_boxes(small_synthetic, tmp_path):
    cfg = small_synthetic
    split = open_split(cfg.dataset_dir, "UCSDped2", "train")
    boxes = compute_split_boxes(split, "obj_det_with_motion", cfg.dataset.boxes, None, progress=False)
    boxes[3] = np.vstack([boxes[3], [[500, 500, 510, 510]]])  # outside the frame: all-zero flow, dropped
    store = build_cubes(split, boxes, cfg.flow_dir, tmp_path / "cubes", PAPER_CUBES, progress=False)
    assert not (tmp_path / "cubes.partial").exists()
    assert isinstance(store.raw, np.memmap) and store.raw.shape[1:] == (5, 3, 32, 32)
    assert store.flow.shape[1:] == (5, 2, 32, 32) and store.flow.dtype == np.float32
    assert 0 < len(store) < sum(len(b) for b in boxes)
    assert not np.any(np.all(store.boxes == [500, 500, 510, 510], axis=1))
    # Every stored cube equals cropping the frames and flows of its predict context by hand (the
    # store reads each frame's context on a background thread, one frame ahead).
    for i in np.unique(store.frame_index):
        rows = np.flatnonzero(store.frame_index == i)
        context = split.context(i, 4, "predict")
        frames = np.stack([split.read_frame(j) for j in context]).transpose(0, 3, 1, 2)
        flows = np.stack([read_flow(flow_file_path(cfg.flow_dir, split, j)) for j in context]).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(store.raw[rows], crop_cubes(frames, store.boxes[rows]))
        np.testing.assert_array_equal(store.flow[rows], crop_cubes(flows, store.boxes[rows]))
    reopened = CubeStore.open(tmp_path / "cubes")
    assert len(reopened) == len(store) and np.array_equal(reopened.frame_index, store.frame_index)
