"""A split of a dataset as one global frame index, and the temporal context of a frame.

A split is a list of frame files in one global order: videos sorted by folder name,
frames inside a video sorted by file name. `frame_video_idx[i]` is the 1-based video
number of frame i, as in the reference. Frames are read with `cv2.imread` (BGR uint8).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from utils.infra.errors import VECError


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
    mask_reader: Callable[[int], np.ndarray] | None = field(default=None, repr=False)  # pixel mask of frame i
    _frame_size: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def video_lengths(self) -> list[int]:
        return np.bincount(self.frame_video_idx)[1:].tolist()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of every frame of the split: its first frame's, read once."""
        if self._frame_size is None:
            self._frame_size = tuple(read_image(self.frame_paths[0]).shape[:2])
        return self._frame_size

    @property
    def has_pixel_masks(self) -> bool:
        return self.mask_reader is not None

    def read_mask(self, i: int) -> np.ndarray:
        """Frame i's ground-truth pixel mask (bool, H x W): UCSDped2's .bmp, Avenue's volLabel."""
        return self.mask_reader(i)

    def video_name(self, i: int) -> str:
        """The name of the video frame i belongs to."""
        return self.video_names[self.frame_video_idx[i] - 1]

    def read_frame(self, i: int) -> np.ndarray:
        """Frame i, BGR uint8; every frame of a split must have the size of its first frame."""
        image = read_image(self.frame_paths[i])
        if i == 0 and self._frame_size is None:  # frame 0 sets the size: no second read of it
            self._frame_size = tuple(image.shape[:2])
        if tuple(image.shape[:2]) != self.frame_size:
            raise VECError(f"frame {self.frame_paths[i]} of video {self.video_name(i)} is "
                           f"{image.shape[1]}x{image.shape[0]} but the {self.split} split's frames are "
                           f"{self._frame_size[1]}x{self._frame_size[0]}; resize it or remove it")
        return image

    def context(self, i: int, n: int, border_mode: str) -> list[int]:
        try:
            return context_range(self.frame_video_idx, i, n, border_mode)
        except ValueError:
            length = int(np.sum(self.frame_video_idx == self.frame_video_idx[i]))
            needed = 2 if border_mode == "hard" else n + 1
            raise VECError(f"video {self.video_name(i)} of the {self.split} split of {self.dataset_dir} has "
                           f"{length} frame(s), too few for a context of {n} ({border_mode}); it needs at least "
                           f"{needed}: remove it or add frames") from None

    def relative_path(self, i: int) -> Path:
        """Path of frame i below the dataset folder (the flow files mirror it)."""
        return self.frame_paths[i].relative_to(self.dataset_dir)


# How a complete file of each format ends; OpenCV decodes a cut JPEG or PNG without an
# error (the missing part comes out grey), so completeness is checked on the bytes.
_END_MARKERS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}


def read_image(path: Path) -> np.ndarray:
    """A frame as `cv2.imread` gives it (BGR uint8); a missing, corrupt or cut file is a one-line error."""
    image = cv2.imread(str(path))
    if image is None:
        raise VECError(f"cannot read image {path}: the file is missing or corrupt")
    marker = _END_MARKERS.get(Path(path).suffix.lower())
    if marker is not None:
        with open(path, "rb") as f:
            f.seek(max(0, Path(path).stat().st_size - 64))
            tail = f.read()
        if marker not in tail:
            raise VECError(f"image {path} is cut short (its end marker is missing): re-extract or re-download it")
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
