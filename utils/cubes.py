"""Spatio-temporal cubes (docs/method.md §4): the video events VEC learns to complete.

For every box of frame i, the same region is cropped from the frames and flows of the
`predict` context of i and resized to patch_size². Cubes of a whole split are written
to memory-mapped `.npy` files, so memory does not grow with the dataset:

    <store>/raw.npy    (N, T, 3, p, p) uint8    time-major: reshape to (N, 3T, p, p)
    <store>/flow.npy   (N, T_of, 2, p, p) float32
    <store>/index.npz  frame index, box and (h, w) block of each cube
    <store>/meta.json  count and the settings the cubes were made with

A store is built under a hidden `.<store>.<pid>@<host>.<random>.partial` name and renamed when complete (`utils.infra.io.atomic_dir`),
so an interrupted run never leaves a store that looks finished.
"""
from __future__ import annotations

import json
import math
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from utils.datasets.split import VideoSplit
from utils.fingerprints import CubeSpec
from utils.flow.store import flow_file_path, read_flow
from utils.infra.io import atomic_dir, preallocated_npy, require_free_space
from utils.infra.prefetch import read_ahead


def ceil_box(box) -> tuple[int, int, int, int]:
    """The integer box the reference crops and paints: every coordinate ceiled."""
    x1, y1, x2, y2 = (int(math.ceil(float(v))) for v in box[:4])
    return x1, y1, x2, y2


def crop_cubes(stack: np.ndarray, boxes, patch_size: int = 32) -> np.ndarray:
    """Crop every box from every frame of `stack` and resize to patch_size² (the reference's get_foreground).

    stack: (T, C, H, W) frames or flows; boxes: (N, 4) x1, y1, x2, y2 (fractional allowed).
    Returns (N, T, C, p, p) of stack's dtype. Coordinates are ceiled to ints and the crop is
    `[y1:y2, x1:x2]` (end exclusive); a box with an empty crop gives an all-zero cube.
    """
    return crop_frames(list(np.asarray(stack).transpose(0, 2, 3, 1)), boxes, patch_size)


def crop_frames(frames: Sequence[np.ndarray], boxes, patch_size: int = 32) -> np.ndarray:
    """`crop_cubes` of T frames given as (H, W, C) arrays, as they are read: no (T, C, H, W) stack is built."""
    t, c = len(frames), frames[0].shape[2]
    cubes = np.zeros((len(boxes), t, patch_size, patch_size, c), dtype=frames[0].dtype)
    for n, box in enumerate(boxes):
        x1, y1, x2, y2 = ceil_box(box)
        for j, frame in enumerate(frames):
            crop = frame[y1:y2, x1:x2]
            if crop.shape[0] == 0 or crop.shape[1] == 0:
                break
            cubes[n, j] = cv2.resize(crop, (patch_size, patch_size)).reshape(
                patch_size, patch_size, c)
    return np.ascontiguousarray(cubes.transpose(0, 1, 4, 2, 3))


def block_indices(box, h_step: float, w_step: float, mode: int, h_block: int, w_block: int) -> list[tuple[int, int]]:
    """The (h, w) blocks a box belongs to: its centre's (mode 1), plus edge midpoints (mode > 1)
    and corners (mode >= 9), each point taken halfway towards the centre, as the reference does."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
    points = [(cy, cx)]
    if mode > 1:
        points += [(y1, cx), (y2, cx), (cy, x1), (cy, x2)]
    if mode >= 9:
        points += [(y1, x1), (y2, x2), (y2, x1), (y1, x2)]
    blocks = []
    for py, px in points:
        # Clamped so a box touching the far border still has a block (the reference would fail).
        block = (min(max(int((py + cy) / 2 / h_step), 0), h_block - 1),
                 min(max(int((px + cx) / 2 / w_step), 0), w_block - 1))
        if block not in blocks:
            blocks.append(block)
    return blocks


@dataclass
class CubeStore:
    """Read access to the cubes of one split."""

    directory: Path
    raw: np.ndarray  # (N, T, 3, p, p) uint8 memmap
    flow: np.ndarray  # (N, T_of, 2, p, p) float32 memmap
    frame_index: np.ndarray  # (N,)
    boxes: np.ndarray  # (N, 4)
    blocks: np.ndarray  # (N, 2) h, w block
    n_frames: int

    def __len__(self) -> int:
        return len(self.frame_index)

    def block_members(self, h: int, w: int) -> np.ndarray:
        return np.flatnonzero((self.blocks[:, 0] == h) & (self.blocks[:, 1] == w))

    @staticmethod
    def open(directory: Path) -> "CubeStore":
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        count = meta["count"]
        index = np.load(directory / "index.npz")
        return CubeStore(directory,
                         np.load(directory / "raw.npy", mmap_mode="r")[:count],
                         np.load(directory / "flow.npy", mmap_mode="r")[:count],
                         index["frame_index"], index["boxes"], index["blocks"], meta["n_frames"])


def read_store_settings(directory: Path) -> dict | None:
    meta = Path(directory) / "meta.json"
    return json.loads(meta.read_text())["settings"] if meta.is_file() else None


class _FrameCache:
    """The last few frames read, since consecutive contexts overlap in all but one frame."""

    def __init__(self, read, size: int = 12) -> None:
        self.read, self.size, self.items = read, size, OrderedDict()

    def __call__(self, i: int) -> np.ndarray:
        if i not in self.items:
            self.items[i] = self.read(i)
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return self.items[i]


def build_cubes(split: VideoSplit, all_boxes, flow_root: Path, directory: Path, spec: CubeSpec, *,
                settings: dict | None = None, progress: bool = True, frames: Sequence[int] | None = None) -> CubeStore:
    """Crop the cubes of every box of `split` into a store at `directory`, as `spec` says.

    Cubes whose flow is all zero (mean over time of the sum of squares <= motion_thr) are
    dropped, as the reference does. `settings` (`spec.fingerprint(all_boxes)`) is recorded so a
    later run can tell whether the store can be reused. With `frames` (increasing), only those frames' cubes:
    a part that `merge_cube_stores` joins with the parts of the following frames.
    """
    if len(all_boxes) != len(split):
        raise ValueError(f"{len(all_boxes)} box lists for {len(split)} frames")
    directory = Path(directory)
    with atomic_dir(directory) as partial:
        _write_cubes(split, all_boxes, flow_root, partial, spec, settings=settings, progress=progress, frames=frames)
    return CubeStore.open(directory)


def store_capacity(all_boxes, block_mode: int, frames: Sequence[int] | None = None) -> int:
    """Rows reserved in a store's files: every box of `frames` (all frames) in each of its possible blocks."""
    copies = 1 if block_mode <= 1 else (5 if block_mode < 9 else 9)
    frames = range(len(all_boxes)) if frames is None else frames
    return max(1, sum(len(all_boxes[i]) for i in frames) * copies)


def merge_cube_stores(parts: Sequence[Path], directory: Path, capacity: int, chunk: int = 2048) -> CubeStore:
    """One store at `directory` from part stores of consecutive frame shares (in that order).

    Rows, index and meta are what `build_cubes` over all frames writes, given the same
    `capacity` (`store_capacity` of all boxes); the parts are removed afterwards.
    """
    opened = [CubeStore.open(part) for part in parts]
    metas = [json.loads((Path(part) / "meta.json").read_text()) for part in parts]
    count = sum(len(store) for store in opened)
    first = opened[0]
    raw_shape, flow_shape = (capacity, *first.raw.shape[1:]), (capacity, *first.flow.shape[1:])
    with atomic_dir(directory) as partial:
        require_free_space(partial, int(np.prod(raw_shape)) + 4 * int(np.prod(flow_shape)), "the cubes")
        raw = preallocated_npy(partial / "raw.npy", np.uint8, raw_shape)
        flow = preallocated_npy(partial / "flow.npy", np.float32, flow_shape)
        row = 0
        for store in opened:
            for start in range(0, len(store), chunk):
                stop = min(start + chunk, len(store))
                raw[row + start:row + stop] = store.raw[start:stop]
                flow[row + start:row + stop] = store.flow[start:stop]
            row += len(store)
        raw.flush()
        flow.flush()
        del raw, flow
        np.savez(partial / "index.npz", frame_index=np.concatenate([s.frame_index for s in opened]).astype(np.int64),
                 boxes=np.concatenate([s.boxes for s in opened]).astype(np.float64).reshape(-1, 4),
                 blocks=np.concatenate([s.blocks for s in opened]).astype(np.int64).reshape(-1, 2))
        (partial / "meta.json").write_text(json.dumps({**metas[0], "count": count}, indent=1))
    del opened, first
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
    return CubeStore.open(directory)


def frame_cubes(context_frames: Sequence[np.ndarray], context_flows: Sequence[np.ndarray], boxes: np.ndarray,
                spec: CubeSpec, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[int], list[tuple[int, int]]]:
    """One frame's cubes as a store keeps them (docs/method.md §4): the crops of every box, and the rows
    to keep: each box whose flow moves (mean over time of the sum of squares > motion_thr), once per
    block it falls in, with that block."""
    height, width = frame_size
    h_step, w_step = height / spec.h_block, width / spec.w_block
    raw_cubes = crop_frames(context_frames, boxes, spec.patch_size)
    flow_cubes = crop_frames(context_flows, boxes, spec.patch_size)
    motion = (flow_cubes.astype(np.float64) ** 2).sum(axis=(2, 3, 4)).mean(axis=1)
    rows, blocks = [], []
    for n in np.flatnonzero(motion > spec.motion_thr):
        for block in block_indices(boxes[n], h_step, w_step, spec.block_mode, spec.h_block, spec.w_block):
            rows.append(int(n))
            blocks.append(block)
    return raw_cubes, flow_cubes, rows, blocks


def _write_cubes(split: VideoSplit, all_boxes, flow_root: Path, partial: Path, spec: CubeSpec, *,
                 settings: dict | None, progress: bool, frames: Sequence[int] | None = None) -> int:
    sample = split.read_frame(0)
    height, width = sample.shape[:2]
    capacity = store_capacity(all_boxes, spec.block_mode, frames)
    p = spec.patch_size
    raw_shape, flow_shape = (capacity, spec.frames_per_cube, 3, p, p), (capacity, spec.flows_per_cube, 2, p, p)
    require_free_space(partial, int(np.prod(raw_shape)) + 4 * int(np.prod(flow_shape)), f"the {split.split} cubes")
    raw = preallocated_npy(partial / "raw.npy", np.uint8, raw_shape)
    flow = preallocated_npy(partial / "flow.npy", np.float32, flow_shape)
    frame_index, kept_boxes, blocks = [], [], []

    read_frame = _FrameCache(split.read_frame)
    read_flow_of = _FrameCache(lambda i: read_flow(flow_file_path(flow_root, split, i)))

    def read_context(i: int, _previous) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """Frame i's context frames and flows (None without boxes). Called for one frame at a time, in
        order, on read_ahead's thread: the caches need no lock."""
        if len(all_boxes[i]) == 0:
            return None
        return ([read_frame(j) for j in split.context(i, spec.context_frame_num, spec.border_mode)],
                [read_flow_of(j) for j in split.context(i, spec.context_of_num, spec.border_mode)])

    count = 0
    frames = [int(i) for i in (range(len(split)) if frames is None else frames)]
    # The next frame's context is decoded (cv2.imread, np.load) while this frame's boxes are cropped.
    contexts = read_ahead(frames, read_context)
    for i, context in tqdm(contexts, total=len(frames), desc=f"cubes ({split.split})", unit="frame",
                           disable=not progress):
        if context is None:
            continue
        boxes = np.asarray(all_boxes[i]).reshape(-1, 4)
        raw_cubes, flow_cubes, rows, row_blocks = frame_cubes(context[0], context[1], boxes, spec, (height, width))
        for n, block in zip(rows, row_blocks):
            raw[count], flow[count] = raw_cubes[n], flow_cubes[n]
            frame_index.append(i)
            kept_boxes.append(boxes[n])
            blocks.append(block)
            count += 1
    raw.flush()
    flow.flush()
    del raw, flow
    np.savez(partial / "index.npz", frame_index=np.asarray(frame_index, dtype=np.int64),
             boxes=np.asarray(kept_boxes, dtype=np.float64).reshape(-1, 4),
             blocks=np.asarray(blocks, dtype=np.int64).reshape(-1, 2))
    (partial / "meta.json").write_text(json.dumps({"count": count, "n_frames": len(split), "frame_size": [height, width],
                                                   "settings": settings or {}}, indent=1))
    return count
