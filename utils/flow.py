"""Optical flow of every frame of a split, stored as the reference stores it (SPEC §2).

Every backend follows one convention: frames are resized to 512x384, the flow is
computed there and resized back to the frame size WITHOUT rescaling the vectors.
Files: `<flow_root>/<sub-path of the frame>/<frame name up to its first dot>.npy`,
float32 H x W x 2.

An estimator is any callable `(first, second) -> flow` on batches: first and second
(B, H, W, 3) uint8 BGR frames, flow (B, H, W, 2) float32 from first to second.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from utils.datasets import VideoSplit
from utils.errors import VECError

FLOW_SIZE = (512, 384)  # (W, H) the flow is computed at, as the reference's FlowNet2 run
FlowEstimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def flow_file_path(flow_root: Path, split: VideoSplit, i: int) -> Path:
    relative = split.relative_path(i)
    return Path(flow_root) / relative.parent / (relative.name.split(".")[0] + ".npy")


def read_flow(path: Path) -> np.ndarray:
    try:
        return np.load(path)
    except FileNotFoundError:
        raise VECError(f"optical flow file {path} is missing; run `python calc_img_inputs.py` first") from None


def flow_pair(split: VideoSplit, i: int) -> tuple[int, int]:
    """The frames whose flow is stored for frame i.

    (i, i+1) inside a video and (i-1, i) for its last frame. For the first frame of a
    video the reference's test picks (i, i): its context is [i, i, i+1] and it takes the
    first two entries whenever the middle one repeats a neighbour. Reproduced as is.
    """
    before, current, after = split.context(i, 1, "hard")
    if current in (before, after):
        return before, current
    return current, after


def _is_valid_flow_file(path: Path, height: int, width: int) -> bool:
    try:
        stored = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return stored.shape == (height, width, 2) and stored.dtype == np.float32


def save_npy_atomically(path: Path, array: np.ndarray) -> None:
    """Write `array` to `path` via a temporary file and a rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, array)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def resize_to_flow_size(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, FLOW_SIZE) for f in frames])


def resize_flow_back(flows: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, h, w, 2) → (B, H, W, 2), vectors left in the units they were computed in."""
    return np.stack([cv2.resize(f, (width, height)) for f in flows]).astype(np.float32)


class OpenCVFlow:
    """DIS or Farneback optical flow from OpenCV: no weights, fast on a CPU."""

    def __init__(self, method: str = "dis") -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"OpenCV flow method must be dis or farneback, not {method!r}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def _one(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (first, second))
        if self._dis is not None:
            return self._dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[1:3]
        small = [self._one(a, b) for a, b in zip(resize_to_flow_size(first), resize_to_flow_size(second))]
        return resize_flow_back(np.stack(small), height, width)


def build_flow_estimator(method: str, *, device: str = "cpu", batch_size: int = 8,
                         flownet2_checkpoint: Path | None = None, raft_weights: Path | None = None) -> FlowEstimator:
    """The flow backend named by `flow_method` in config.cfg."""
    if method in ("dis", "farneback"):
        return OpenCVFlow(method)
    if method == "flownet2":
        from FlowNet2_src.estimator import FlowNet2Estimator

        return FlowNet2Estimator(flownet2_checkpoint, device=device, batch_size=batch_size)
    if method == "raft":
        from utils.raft_flow import RaftEstimator

        return RaftEstimator(raft_weights, device=device, batch_size=batch_size)
    raise VECError(f"flow_method = {method} is unknown; use flownet2, dis, farneback or raft")


def compute_split_flow(split: VideoSplit, estimator: FlowEstimator, flow_root: Path, *, batch_size: int = 8,
                       progress: bool = True) -> int:
    """Compute and save the flow of every frame of `split`; frames with a valid file are skipped.

    Returns the number of flow files written.
    """
    height, width = split.read_frame(0).shape[:2]
    todo = [i for i in range(len(split)) if not _is_valid_flow_file(flow_file_path(flow_root, split, i), height, width)]
    bar = tqdm(total=len(todo), desc=f"flow ({split.split})", unit="frame", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        pairs = [flow_pair(split, i) for i in chunk]
        first = np.stack([split.read_frame(a) for a, _ in pairs])
        second = np.stack([split.read_frame(b) for _, b in pairs])
        if first.shape[1:3] != (height, width):
            raise VECError(f"frames of {split.dataset_dir} differ in size; all frames of a dataset must share one size")
        for i, flow in zip(chunk, estimator(first, second)):
            save_npy_atomically(flow_file_path(flow_root, split, i), np.ascontiguousarray(flow, dtype=np.float32))
        bar.update(len(chunk))
    bar.close()
    return len(todo)
