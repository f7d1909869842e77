"""Boxes of every frame of a split, in the reference's file format.

`<dataset folder>/bboxes_<train|test>_<mode>.npy` holds an object array with one
(n, 4) array per frame. Files made by the reference code (downloadable from its
repository) are read as they are; reading them accepts numpy arrays only, never
arbitrary pickled objects.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from utils.config import BoxParams
from utils.datasets import VideoSplit
from utils.errors import VECError
from utils.foreground import filter_detections, frame_box, motion_boxes, patch_grid, remove_covered

# A detector maps BGR frames (H, W, 3) uint8 to per-frame (N, 5) detections: box and score, all classes.
Detector = Callable[[Sequence[np.ndarray]], list]
PATCH_GRIDS = ((3, 4), (6, 8))


def box_file_path(dataset_dir: Path, split: str, mode: str) -> Path:
    return Path(dataset_dir) / f"bboxes_{split}_{mode}.npy"


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a box file cannot run code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a box file")


def load_box_file(path: Path, n_frames: int | None = None) -> list[np.ndarray]:
    """Per-frame (n, 4) box arrays from a box file, checked against the split's frame count."""
    path = Path(path)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(f)
        if dtype.hasobject:
            try:
                array = _ArraysOnlyUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError) as err:
                raise VECError(f"box file {path} is not a box file ({err}); delete it to recompute boxes") from None
        else:
            f.seek(0)
            array = np.load(f)
    frames = [np.asarray(b).reshape(-1, 4) if np.size(b) else np.zeros((0, 4), np.float32) for b in array]
    if n_frames is not None and len(frames) != n_frames:
        raise VECError(f"box file {path} has boxes for {len(frames)} frames but the split has {n_frames}; "
                       "delete it (or set *_bbox_saved = False) to recompute the boxes")
    return frames


def save_box_file(path: Path, boxes: Sequence[np.ndarray]) -> None:
    """Save per-frame boxes as the reference does (object array), atomically."""
    array = np.empty(len(boxes), dtype=object)
    for i, b in enumerate(boxes):
        array[i] = b
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as f:
        np.save(f, array, allow_pickle=True)
    os.replace(temporary, path)


def frame_boxes(mode: str, frames: np.ndarray, detections: np.ndarray | None, params: BoxParams) -> np.ndarray:
    """Boxes of the middle frame of `frames` (frames i-1, i, i+1) for one foreground mode (SPEC §3)."""
    height, width = frames.shape[1:3]
    if mode == "frame":
        return frame_box(height, width)
    if mode == "simple_patch":
        return np.concatenate([patch_grid(height, width, r, c) for r, c in PATCH_GRIDS])
    appearance = np.zeros((0, 4), np.float32)
    if detections is not None:
        appearance = remove_covered(filter_detections(detections, params.score_thr, params.min_area), params.cover_thr)
    if mode == "obj_det":
        return appearance
    motion = motion_boxes(frames, appearance, params.area_thr, params.binary_thr, params.extend, params.blur_size,
                          wrap_uint8=params.motion_uint8_wrap)
    # Same dtype rule as the reference: float64 once integer motion boxes are appended.
    return np.concatenate([appearance, motion]) if len(motion) else appearance


def build_detector(name: str, *, checkpoint: Path, config: Path | None, device: str, batch_size: int) -> Detector | None:
    """The appearance detector named by `detector` in config.cfg (None for `none`)."""
    if name == "none":
        return None
    if name == "cascade_rcnn":
        from utils.cascade_rcnn import CascadeRCNNDetector

        return CascadeRCNNDetector(checkpoint, device=device, batch_size=batch_size)
    if name == "mmdet":
        from utils.mmdet_detector import MMDetDetector

        if config is None:
            raise VECError("detector = mmdet needs detector_config = PATH of an MMDetection 3 config in config.cfg")
        return MMDetDetector(config, checkpoint, device=device)
    raise VECError(f"detector = {name} is unknown; use cascade_rcnn, mmdet or none")


def compute_split_boxes(split: VideoSplit, mode: str, params: BoxParams, detector: Detector | None, *,
                        batch_size: int = 4, progress: bool = True) -> list[np.ndarray]:
    """Boxes of every frame of `split` (each frame decoded once; detector run in batches)."""
    boxes: list[np.ndarray] = []
    cache: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(split), desc=f"boxes ({split.split})", unit="frame", disable=not progress)
    for start in range(0, len(split), batch_size):
        chunk = list(range(start, min(start + batch_size, len(split))))
        contexts = [split.context(i, 1, "hard") for i in chunk]
        needed = sorted({j for c in contexts for j in c})
        cache = {j: cache[j] if j in cache else split.read_frame(j) for j in needed}
        detections = [None] * len(chunk)
        if detector is not None and mode in ("obj_det_with_motion", "obj_det"):
            detections = detector([cache[i] for i in chunk])
        for context, dets in zip(contexts, detections):
            boxes.append(frame_boxes(mode, np.stack([cache[j] for j in context]), dets, params))
        bar.update(len(chunk))
    bar.close()
    return boxes


def split_boxes(split: VideoSplit, mode: str, params: BoxParams, *, reuse_saved: bool, detector_factory,
                batch_size: int = 4, progress: bool = True) -> list[np.ndarray]:
    """Boxes of a split: the saved box file when present and `reuse_saved`, else computed and saved.

    `detector_factory()` builds the detector only when boxes must be computed, so a user
    with the reference's box files needs no detector weights.
    """
    path = box_file_path(split.dataset_dir, split.split, mode)
    if reuse_saved and path.is_file():
        print(f"boxes: reusing {path}")
        return load_box_file(path, len(split))
    detector = detector_factory() if mode in ("obj_det_with_motion", "obj_det") else None
    boxes = compute_split_boxes(split, mode, params, detector, batch_size=batch_size, progress=progress)
    save_box_file(path, boxes)
    return boxes
