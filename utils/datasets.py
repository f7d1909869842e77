"""Benchmark datasets as the reference reads them (SPEC §1), and temporal context.

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

FRAME_EXTENSIONS = {"UCSDped2": ".tif", "avenue": ".jpg", "ShanghaiTech": ".jpg"}


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


def _sorted_frames(video_dir: Path, extension: str) -> list[Path]:
    return sorted(video_dir.glob("*" + extension), key=lambda p: p.name)


def _collect(video_dirs: list[Path], extension: str) -> tuple[list[Path], np.ndarray, list[str]]:
    frames: list[Path] = []
    video_idx: list[int] = []
    names: list[str] = []
    for number, video in enumerate(video_dirs, start=1):
        video_frames = _sorted_frames(video, extension)
        if not video_frames:
            raise VECError(f"video folder {video} holds no {extension} frames; remove it or add its frames")
        frames += video_frames
        video_idx += [number] * len(video_frames)
        names.append(video.name)
    return frames, np.asarray(video_idx, dtype=np.int64), names


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise VECError(f"{what} folder {path} not found; download the dataset into it "
                       f"(see the README) or set dataset_name = synthetic in config.cfg")


def _read_ucsd(root: Path, split: str, extension: str) -> VideoSplit:
    split_dir = root / ("Train" if split == "train" else "Test")
    _require_dir(split_dir, f"{split} split")
    prefix = "Train" if split == "train" else "Test"
    entries = sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    video_dirs = [p for p in entries if prefix in p.name and not p.name.endswith("_gt")]
    frames, video_idx, names = _collect(video_dirs, extension)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dirs = [p for p in entries if p.name.endswith("_gt")]
    if split == "test" and gt_dirs:
        masks = [m for gt in gt_dirs for m in _sorted_frames(gt, ".bmp")]
        if len(masks) != len(frames):
            raise VECError(f"{split_dir}: {len(masks)} ground-truth masks for {len(frames)} frames; "
                           "every TestNNN folder needs a TestNNN_gt folder with one .bmp per frame")
        result.mask_paths = masks
        result.labels = np.array([cv2.imread(str(m), cv2.IMREAD_GRAYSCALE).max() > 0 for m in masks], dtype=np.int64)
    return result


def _read_avenue(root: Path, split: str, extension: str) -> VideoSplit:
    split_dir = root / ("training" if split == "train" else "testing") / "frames"
    _require_dir(split_dir, f"{split} split")
    video_dirs = sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    frames, video_idx, names = _collect(video_dirs, extension)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dir = root / "ground_truth_demo" / "testing_label_mask"
    if split == "test" and gt_dir.is_dir():
        from scipy.io import loadmat

        labels = []
        for number in range(1, len(video_dirs) + 1):
            mat = gt_dir / f"{number}_label.mat"
            if not mat.is_file():
                raise VECError(f"ground truth {mat} is missing; Avenue needs one N_label.mat per test video")
            masks = loadmat(str(mat), verify_compressed_data_integrity=False)["volLabel"]
            labels += [int(np.asarray(m).max() > 0) for m in masks.ravel()]
        if len(labels) != len(frames):
            raise VECError(f"{gt_dir}: {len(labels)} labelled frames for {len(frames)} test frames")
        result.labels = np.asarray(labels, dtype=np.int64)
    return result


def _read_shanghaitech(root: Path, split: str, extension: str) -> VideoSplit:
    if split == "train":
        parts = [root / "training" / "videosFrame"]
    else:
        parts = [root / "Testing" / f"frames_part{j}" for j in (1, 2)]
    for part in parts[:1]:
        _require_dir(part, f"{split} split")
    video_dirs = [v for part in parts if part.is_dir()
                  for v in sorted((p for p in part.iterdir() if p.is_dir()), key=lambda p: p.name)]
    frames, video_idx, names = _collect(video_dirs, extension)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dir = root / "Testing" / "test_frame_mask"
    if split == "test" and gt_dir.is_dir():
        labels = np.concatenate([np.load(p).ravel() for p in sorted(gt_dir.glob("*.npy"), key=lambda p: p.name)])
        if len(labels) != len(frames):
            raise VECError(f"{gt_dir}: {len(labels)} frame labels for {len(frames)} test frames")
        result.labels = (labels > 0).astype(np.int64)
    return result


_READERS = {"UCSDped2": _read_ucsd, "avenue": _read_avenue, "ShanghaiTech": _read_shanghaitech}


def open_split(dataset_dir: Path, layout: str, split: str, extension: str | None = None) -> VideoSplit:
    """Index one split of a dataset stored in the `layout` of a benchmark (SPEC §1)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    _require_dir(Path(dataset_dir), "dataset")
    result = _READERS[layout](Path(dataset_dir), split, extension or FRAME_EXTENSIONS[layout])
    if len(result) == 0:
        raise VECError(f"no {split} frames found in {dataset_dir} ({layout} layout)")
    return result


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
