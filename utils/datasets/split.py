"""A split of a dataset as one global frame index, and the temporal context of a frame.

A split is a list of frame files in one global order: videos sorted by folder name,
frames inside a video sorted by file name. `frame_video_idx[i]` is the 1-based video
number of frame i, as in the reference. Frames are read with `cv2.imread` (BGR uint8).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.errors import VECError


@dataclass
class VideoSplit:
    """The frames (and, for a test split, the ground truth) of one split of a dataset."""

    dataset_dir: Path
    split: str
    frame_paths: list[Path]
    frame_video_idx: np.ndarray
    video_names: list[str]
    labels: np.ndarray | None = None  # per-frame 0/1, test splits with ground truth
    mask_paths: list[Path] | None = field(default=None, repr=False)  # UCSD pixel masks

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def video_lengths(self) -> list[int]:
        return np.bincount(self.frame_video_idx)[1:].tolist()

    def read_frame(self, i: int) -> np.ndarray:
        return read_image(self.frame_paths[i])

    def context(self, i: int, n: int, border_mode: str) -> list[int]:
        return context_range(self.frame_video_idx, i, n, border_mode)

    def relative_path(self, i: int) -> Path:
        """Path of frame i below the dataset folder (the flow files mirror it)."""
        return self.frame_paths[i].relative_to(self.dataset_dir)


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise VECError(f"cannot read image {path}: the file is missing or corrupt")
    return image


def context_range(frame_video_idx, i: int, n: int, border_mode: str) -> list[int]:
    """Indices of the frames that form the temporal context of frame `i`.

    `predict`: frames i-n .. i (current frame last); `hard`: i-n .. i+n; `elastic`: a
    window of 2n+1 frames shifted to stay inside the split. Near a video boundary the
    frames of the neighbouring video are replaced following the reference's rules
    exactly (including its quirks for contexts longer than the video), so the indices
    equal the reference's wherever it returns some. Where the reference fails (a
    video shorter than the context), this raises ValueError.
    """
    video_of = list(frame_video_idx)
    total = len(video_of)
    if border_mode == "elastic":
        if i - n < 0:
            i = n
        elif i + n > total - 1:
            i = total - 1 - n
        start, end, needed = i - n, i + n, 2 * n + 1
    elif border_mode == "predict":
        start, end, needed = max(0, i - n), i, n + 1
    elif border_mode == "hard":
        start, end, needed = max(0, i - n), min(total - 1, i + n), 2 * n + 1
    else:
        raise ValueError(f"unknown border_mode {border_mode!r}")

    # Video number of every slot of the window; slots past the split's ends copy the edge.
    window = video_of[start:end + 1]
    pad = needed - len(window)
    if pad > 0:
        window = [window[0]] * pad + window if start == 0 else window + [window[-1]] * pad
    relative = np.asarray(window) - video_of[i]
    offset = int(relative.sum())
    too_short = ValueError(f"video of frame {i} is too short for a context of {n} frames")
    if relative[0] != 0 and relative[-1] != 0:
        raise too_short
    if pad == 0 and offset == 0:
        return list(range(start, end + 1))

    if border_mode == "elastic":
        indices = list(range(start - offset, end - offset + 1))
    elif border_mode == "predict":
        if pad > 0 and offset != 0:
            raise too_short
        indices = list(range(start - offset, end + 1))
        if not indices:
            raise too_short
        indices = [indices[0]] * max(abs(offset), pad) + indices
    else:
        if pad > 0 and offset != 0:
            raise too_short
        if offset > 0:
            indices = list(range(start, end - offset + 1))
            if not indices:
                raise too_short
            indices = indices + [indices[-1]] * offset
        elif offset < 0:
            indices = list(range(start - offset, end + 1))
            if not indices:
                raise too_short
            indices = [indices[0]] * -offset + indices
        elif start == 0:
            indices = [start] * pad + list(range(start, end + 1))
        else:
            indices = list(range(start, end + 1)) + [end] * pad
    return indices
