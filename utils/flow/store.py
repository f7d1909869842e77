"""Optical flow of every frame of a split, stored as the reference stores it (docs/method.md §2).

Files: `<flow_root>/<sub-path of the frame>/<frame name up to its first dot>.npy`,
float32 H x W x 2. Each file is written atomically, so an interrupted run resumes
where it stopped: frames with a valid file are skipped.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from utils.datasets.split import VideoSplit
from utils.infra.errors import VECError
from utils.flow.base import FlowBackend
from utils.infra.io import make_dirs, remove_stale_temporaries, require_free_space, save_npy
from utils.infra.prefetch import read_ahead


def flow_file_path(flow_root: Path, split: VideoSplit, i: int) -> Path:
    relative = split.relative_path(i)
    return Path(flow_root) / relative.parent / (relative.name.split(".")[0] + ".npy")


def read_flow(path: Path) -> np.ndarray:
    try:
        return np.load(path)
    except FileNotFoundError:
        raise VECError(f"optical flow file {path} is missing; run `python calc_img_inputs.py` first") from None
    except (ValueError, EOFError, OSError) as err:
        raise VECError(f"optical flow file {path} is truncated or corrupt ({str(err).splitlines()[0]}); "
                       "delete it and run `python calc_img_inputs.py` to recompute it") from None


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


def is_valid_flow_file(path: Path, height: int, width: int) -> bool:
    try:
        stored = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return stored.shape == (height, width, 2) and stored.dtype == np.float32


def compute_split_flow(split: VideoSplit, backend: FlowBackend, flow_root: Path, *, batch_size: int = 8,
                       progress: bool = True, frames: Sequence[int] | None = None) -> int:
    """Compute and save the flow of every frame of `split` (or of `frames` only: one process's
    share) in chunks of `batch_size` pairs; frames with a valid file are skipped. Returns the
    number of flow files written. The next chunk's frames are decoded on a background thread
    (utils/infra/prefetch.py), and the last chunk's files written on another, while the backend computes
    this chunk's flow."""
    height, width = split.read_frame(0).shape[:2]
    frames = range(len(split)) if frames is None else frames
    todo = [i for i in frames if not is_valid_flow_file(flow_file_path(flow_root, split, i), height, width)]
    if todo:
        require_free_space(make_dirs(flow_root), len(todo) * (height * width * 2 * 4 + 128), "the optical flow")
        # A killed run's half-written files; only this process writes these frames' files.
        remove_stale_temporaries(flow_file_path(flow_root, split, i) for i in todo)
    bar = tqdm(total=len(todo), desc=f"flow ({split.split})", unit="frame", disable=not progress)

    def read_pairs(chunk: list[int], previous) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        # Consecutive pairs share a frame ((i, i+1), (i+1, i+2)): each frame is decoded once, and the
        # previous chunk's frames are reused. read_frame checks every frame's size.
        known = previous[2] if previous is not None else {}
        pairs = [flow_pair(split, i) for i in chunk]
        decoded: dict[int, np.ndarray] = {}
        for j in sorted({j for pair in pairs for j in pair}):
            decoded[j] = known[j] if j in known else split.read_frame(j)
        first = np.stack([decoded[a] for a, _ in pairs])
        second = np.stack([decoded[b] for _, b in pairs])
        return first, second, decoded

    chunks = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    # The files of a chunk are written on a background thread while the backend computes the next one.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow-writer") as writer:
        pending = None  # the previous chunk's write and its frame count
        for chunk, (first, second, _) in read_ahead(chunks, read_pairs):
            flows = [np.ascontiguousarray(flow, dtype=np.float32) for flow in backend(first, second)]
            if pending is not None:
                pending[0].result()  # re-raises a failed write here, before more is queued
                bar.update(pending[1])
            paths = [flow_file_path(flow_root, split, i) for i in chunk]
            pending = writer.submit(_save_flows, paths, flows), len(chunk)
        if pending is not None:
            pending[0].result()
            bar.update(pending[1])
    bar.close()
    return len(todo)


def _save_flows(paths: list[Path], flows: list[np.ndarray]) -> None:
    for path, flow in zip(paths, flows):
        save_npy(path, flow)
