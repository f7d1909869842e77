"""Flow storage and the OpenCV backends: layout, pairs, resume, atomic writes, known shifts."""
import numpy as np
import pytest

from utils.datasets import open_split
from utils.infra.errors import VECError
from utils.flow import (FLOW_SIZE, OpenCVFlow, build_flow_backend, compute_split_flow, flow_file_path, flow_pair,
                        read_flow)


def _textured_pair(shift_x, shift_y, height=120, width=160):
    rng = np.random.default_rng(0)
    import cv2
    big = cv2.GaussianBlur(rng.uniform(0, 255, (height + 40, width + 40)), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min()) * 255  # full contrast: blurring flattened it
    first = big[20:20 + height, 20:20 + width]
    second = big[20 - shift_y:20 - shift_y + height, 20 - shift_x:20 - shift_x + width]
    to_bgr = lambda a: np.repeat(np.clip(a, 0, 255).astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
    return to_bgr(first)[None], to_bgr(second)[None]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_known_shift_is_recovered_in_flow_size_units(method):
    first, second = _textured_pair(3, -2)
    flow = OpenCVFlow(method)(first, second)
    assert flow.shape == (1, 120, 160, 2) and flow.dtype == np.float32
    # Computed at 512x384 and resized back without rescaling: vectors are in 512x384 pixels.
    expected = (3 * FLOW_SIZE[0] / 160, -2 * FLOW_SIZE[1] / 120)
    centre = flow[0, 30:90, 40:120].reshape(-1, 2)
    np.testing.assert_allclose(np.median(centre, axis=0), expected, atol=0.8)


def test_flow_files_mirror_frames_and_resume(tiny_synthetic, tmp_path):
    split = open_split(tiny_synthetic, "UCSDped2", "test")
    path = flow_file_path(tmp_path, split, 0)
    assert path.relative_to(tmp_path).as_posix() == "Test/Test001/001.npy"
    assert compute_split_flow(split, OpenCVFlow("dis"), tmp_path, progress=False) == len(split)
    assert read_flow(path).shape == (160, 240, 2)
    assert not list(tmp_path.rglob("*.tmp"))
    path.write_bytes(b"truncated")  # as if killed mid-write by an older tool
    assert compute_split_flow(split, OpenCVFlow("dis"), tmp_path, progress=False) == 1
    assert read_flow(path).dtype == np.float32


def test_rerun_removes_the_half_written_files_of_a_killed_run(tiny_synthetic, tmp_path):
    """SIGKILL during a write leaves atomic_file's temporary beside the flow file; the rerun that writes
    that frame removes it, and leaves other files alone."""
    split = open_split(tiny_synthetic, "UCSDped2", "test")
    assert compute_split_flow(split, OpenCVFlow("dis"), tmp_path, progress=False) == len(split)
    path = flow_file_path(tmp_path, split, 9)
    path.unlink()
    stale = path.with_name(f".{path.name}.k1ll3d_.tmp")
    stale.write_bytes(b"half a flow file")
    neighbour = flow_file_path(tmp_path, split, 10).name  # a frame this run does not write
    kept = [path.with_name("notes.tmp"), path.with_name(f".{neighbour}.other_.tmp")]
    for other in kept:
        other.write_bytes(b"someone else's")
    assert compute_split_flow(split, OpenCVFlow("dis"), tmp_path, progress=False) == 1
    assert not stale.exists() and all(other.exists() for other in kept)
    assert read_flow(path).shape == (160, 240, 2)


def test_each_flow_file_holds_its_frame_pairs_flow(tiny_synthetic, tmp_path):
    """Chunks of 5 pairs across video ends, frames shared between pairs and chunks decoded once and reused,
    files written while the next chunk computes: every file is the backend's flow of its own pair."""
    split = open_split(tiny_synthetic, "UCSDped2", "test")  # videos of 12 frames: the 3rd chunk spans both
    backend = OpenCVFlow("dis")
    assert compute_split_flow(split, backend, tmp_path, batch_size=5, progress=False) == len(split)
    for i in range(len(split)):
        first, second = flow_pair(split, i)
        expected = backend(split.read_frame(first)[None], split.read_frame(second)[None])[0]
        assert np.array_equal(read_flow(flow_file_path(tmp_path, split, i)), expected), i


def test_flow_pairs_follow_the_reference(small_synthetic):
    split = open_split(small_synthetic.dataset_dir, "UCSDped2", "train")  # 3 videos of 24 frames
    assert flow_pair(split, 5) == (5, 6)
    assert flow_pair(split, 23) == (22, 23)  # last frame of a video: previous frame to it
    assert flow_pair(split, 24) == (24, 24)  # first frame of a video: the reference pairs it with itself


def test_missing_flow_and_unknown_method_are_clear(tmp_path):
    with pytest.raises(VECError, match="calc_img_inputs.py"):
        read_flow(tmp_path / "none.npy")
    with pytest.raises(VECError, match="flow_method = pwc is unknown"):
        build_flow_backend("pwc")


def test_raft_without_weights_names_the_file_to_fetch(tmp_path):
    from utils.flow.raft import RaftFlow

    with pytest.raises(VECError, match="raft_large_C_T_SKHT_V2"):
        RaftFlow.from_checkpoint(tmp_path / "raft_large_C_T_SKHT_V2-ff5fadd5.pth")


@pytest.mark.slow  # RAFT-large's 12 refinement steps at 512x384 on the CPU
def test_raft_backend_with_local_weights(tmp_path):
    import torch
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    torch.save(raft_large(weights=None).state_dict(), tmp_path / "raft.pth")
    backend = build_flow_backend("raft", raft_weights=tmp_path / "raft.pth")
    first, second = _textured_pair(1, 0, height=48, width=64)
    flow = backend(first, second)
    assert flow.shape == (1, 48, 64, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_flow_to_image_colours():
    from utils.flow import flow_to_image

    still = flow_to_image(np.zeros((4, 5, 2), np.float32))
    assert still.shape == (4, 5, 3) and still.dtype == np.uint8 and np.all(still == 255)  # no motion: white
    rightwards = flow_to_image(np.dstack([np.ones((4, 5)), np.zeros((4, 5))]).astype(np.float32))
    leftwards = flow_to_image(np.dstack([-np.ones((4, 5)), np.zeros((4, 5))]).astype(np.float32))
    assert rightwards[0, 0, 0] > rightwards[0, 0, 2] and leftwards[0, 0, 2] > leftwards[0, 0, 0]
