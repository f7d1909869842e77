"""The benchmarks' folder layouts (docs/method.md §1): UCSDped2, Avenue, ShanghaiTech.

Each reader lists a split's videos and frames in the reference's order and, for a test
split, reads its ground truth into per-frame labels.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import cv2
import numpy as np

from utils.datasets.split import VideoSplit
from utils.infra.errors import VECError

FRAME_EXTENSIONS = {"UCSDped2": ".tif", "avenue": ".jpg", "ShanghaiTech": ".jpg"}  # the reference's frames
# Frames decoded from the official video files (python -m utils.datasets prepare) are lossless PNGs.
DECODED_FRAME_EXTENSION = ".png"


def _sorted_frames(video_dir: Path, extensions: tuple[str, ...]) -> list[Path]:
    """A folder's files with one of `extensions`, sorted by name; hidden files (a Mac's `._001.tif`)
    are left out, as the reference's glob leaves them out. One kind of frame per folder."""
    if not video_dir.is_dir():
        return []
    files = [p for p in video_dir.iterdir() if p.suffix in extensions and not p.name.startswith(".")]
    kinds = sorted({p.suffix for p in files})
    if len(kinds) > 1:
        raise VECError(f"video folder {video_dir} holds frames of several kinds ({', '.join(kinds)}); "
                       "keep one kind per video")
    return sorted(files, key=lambda p: p.name)


def _collect(video_dirs: list[Path], extensions: tuple[str, ...]) -> tuple[list[Path], np.ndarray, list[str]]:
    frames: list[Path] = []
    video_idx: list[int] = []
    names: list[str] = []
    for number, video in enumerate(video_dirs, start=1):
        video_frames = _sorted_frames(video, extensions)
        if not video_frames:
            raise VECError(f"video folder {video} holds no frames ({' or '.join(extensions)}); "
                           "remove it or add its frames")
        frames += video_frames
        video_idx += [number] * len(video_frames)
        names.append(video.name)
    return frames, np.asarray(video_idx, dtype=np.int64), names


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise VECError(f"{what} folder {path} not found; download the dataset into it "
                       f"(see the README) or set dataset_name = synthetic in config.cfg")


def _refuse_strays(entries: list[Path], video_dirs: list[Path], prefix: str) -> None:
    """A folder of a UCSD split that is neither a video (its name holds `prefix`) nor a video's `_gt`
    masks would be left out of the split without a word: name it instead."""
    names = {p.name for p in video_dirs}
    for entry in entries:
        if entry.name in names or (entry.name.endswith("_gt") and entry.name[:-3] in names):
            continue
        what = ("the masks of no video" if entry.name.endswith("_gt") else
                f"not a video of the UCSDped2 layout (their names hold '{prefix}')")
        raise VECError(f"folder {entry} is {what}; rename it (videos {prefix}NNN, their masks {prefix}NNN_gt) "
                       "or move it out of the split")


def _read_ucsd(root: Path, split: str, extensions: tuple[str, ...]) -> VideoSplit:
    split_dir = root / ("Train" if split == "train" else "Test")
    _require_dir(split_dir, f"{split} split")
    prefix = "Train" if split == "train" else "Test"
    entries = sorted((p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    video_dirs = [p for p in entries if prefix in p.name and not p.name.endswith("_gt")]
    _refuse_strays(entries, video_dirs, prefix)
    frames, video_idx, names = _collect(video_dirs, extensions)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dirs = [p for p in entries if p.name.endswith("_gt")]
    if split == "test" and gt_dirs:
        masks = []
        for video, length in zip(video_dirs, result.video_lengths):
            video_masks = _sorted_frames(split_dir / f"{video.name}_gt", (".bmp",))
            if len(video_masks) != length:
                raise VECError(f"{split_dir / (video.name + '_gt')}: {len(video_masks)} ground-truth masks for "
                               f"{length} frames of video {video.name}; every TestNNN folder needs a TestNNN_gt folder "
                               "with one .bmp per frame")
            masks += video_masks
        result.mask_paths = masks
        result.mask_reader = lambda i: cv2.imread(str(masks[i]), cv2.IMREAD_GRAYSCALE) > 0
        result.labels = np.array([cv2.imread(str(m), cv2.IMREAD_GRAYSCALE).max() > 0 for m in masks], dtype=np.int64)
    return result


def avenue_label_file(gt_dir: Path, video_name: str, position: int) -> Path:
    """Avenue's ground truth of test video `video_name` (`05` -> 5_label.mat); a name without
    digits takes its 1-based position. By name, so a copy missing some videos still matches."""
    digits = re.findall(r"\d+", video_name)
    return gt_dir / f"{int(digits[-1]) if digits else position}_label.mat"


def _read_avenue(root: Path, split: str, extensions: tuple[str, ...]) -> VideoSplit:
    split_dir = root / ("training" if split == "train" else "testing") / "frames"
    _require_dir(split_dir, f"{split} split")
    video_dirs = sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    frames, video_idx, names = _collect(video_dirs, extensions)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dir = root / "ground_truth_demo" / "testing_label_mask"
    if split == "test" and gt_dir.is_dir():
        from scipy.io import loadmat

        labels, mats = [], []
        for position, (name, length) in enumerate(zip(names, result.video_lengths), start=1):
            mat = avenue_label_file(gt_dir, name, position)
            if not mat.is_file():
                raise VECError(f"ground truth {mat} of test video {name} is missing; Avenue needs one "
                               "N_label.mat per test video")
            masks = loadmat(str(mat), verify_compressed_data_integrity=False)["volLabel"].ravel()
            if len(masks) != length:
                raise VECError(f"{mat}: {len(masks)} labelled frames for {length} frames of test video {name}")
            labels += [int(np.asarray(m).max() > 0) for m in masks]
            mats.append(mat)
        result.labels = np.asarray(labels, dtype=np.int64)
        result.mask_reader = _per_video_mask_reader(mats, result, _avenue_masks)
    return result


def _avenue_masks(mat: Path):
    from scipy.io import loadmat

    return loadmat(str(mat), verify_compressed_data_integrity=False)["volLabel"].ravel()


def _per_video_mask_reader(files: list[Path], split: VideoSplit, load):
    """Frame i's mask (bool) from its video's file, `load(file)[frame]`, one video's file held at a time."""
    video_masks = functools.lru_cache(maxsize=1)(load)
    starts = np.concatenate([[0], np.cumsum(split.video_lengths)])

    def read(i: int) -> np.ndarray:
        number = int(split.frame_video_idx[i])
        return np.asarray(video_masks(files[number - 1])[i - starts[number - 1]]) > 0

    return read


def _read_shanghaitech(root: Path, split: str, extensions: tuple[str, ...]) -> VideoSplit:
    if split == "train":
        parts = [root / "training" / "videosFrame"]
    else:
        parts = [root / "Testing" / f"frames_part{j}" for j in (1, 2)]
    for part in parts[:1]:
        _require_dir(part, f"{split} split")
    video_dirs = [v for part in parts if part.is_dir()
                  for v in sorted((p for p in part.iterdir() if p.is_dir()), key=lambda p: p.name)]
    frames, video_idx, names = _collect(video_dirs, extensions)
    result = VideoSplit(root, split, frames, video_idx, names)
    gt_dir = root / "Testing" / "test_frame_mask"
    if split == "test" and gt_dir.is_dir():
        labels = []
        for name, length in zip(names, result.video_lengths):
            path = gt_dir / f"{name}.npy"
            if not path.is_file():
                raise VECError(f"ground truth {path} is missing; ShanghaiTech needs one <video>.npy per test video")
            video_labels = np.load(path).ravel()
            if len(video_labels) != length:
                raise VECError(f"{path}: {len(video_labels)} frame labels for {length} frames of video {name}")
            labels.append(video_labels)
        result.labels = (np.concatenate(labels) > 0).astype(np.int64)
    pixel_dir = root / "Testing" / "test_pixel_mask"
    if split == "test" and gt_dir.is_dir() and pixel_dir.is_dir():
        files = []
        for name, length in zip(names, result.video_lengths):
            path = pixel_dir / f"{name}.npy"
            if not path.is_file():
                raise VECError(f"pixel ground truth {path} of test video {name} is missing; ShanghaiTech's "
                               f"{pixel_dir.name} folder needs one <video>.npy per test video (or remove the folder)")
            count = np.load(path, mmap_mode="r").shape[0]
            if count != length:
                raise VECError(f"{path}: {count} pixel masks for {length} frames of video {name}")
            files.append(path)
        result.mask_reader = _per_video_mask_reader(files, result, lambda path: np.load(path, mmap_mode="r"))
    return result


_READERS = {"UCSDped2": _read_ucsd, "avenue": _read_avenue, "ShanghaiTech": _read_shanghaitech}


def open_split(dataset_dir: Path, layout: str, split: str, extension: str | None = None) -> VideoSplit:
    """Index one split of a dataset stored in the `layout` of a benchmark (docs/method.md §1).

    Frames are the layout's files (FRAME_EXTENSIONS) or lossless PNGs decoded from the official
    videos, unless `extension` names the one kind to read."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    _require_dir(Path(dataset_dir), "dataset")
    extensions = (extension,) if extension else (FRAME_EXTENSIONS[layout], DECODED_FRAME_EXTENSION)
    result = _READERS[layout](Path(dataset_dir), split, extensions)
    if len(result) == 0:
        raise VECError(f"no {split} frames found in {dataset_dir} ({layout} layout)")
    return result
