"""Region (bounding-box) ground truth of anomalies, for RBDC / TBDC (docs/region_ground_truth.md).

Files follow the layout of Ramachandra & Jones's track annotations for UCSDped2 and Avenue,
as the widely used RBDC/TBDC code reads them: one text file per test video, one line per
region, whitespace separated:

    <frame file name> <track id> <center x> <center y> <width> <height>

e.g. `001.tif 0 57.5 80.0 13 19`. The frame number is the file name's digits (1-based);
track ids count per file. A line converts to inclusive pixel corners as that code does:
x1 = floor(cx - w/2), y1 = floor(cy - h/2), x2 = ceil(x1 + w), y2 = ceil(y1 + h), clipped
to the frame.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from utils.infra.errors import VECError

REGION_FOLDER = "region_ground_truth"  # below the dataset folder, e.g. raw_datasets/UCSDped2/
FILE_SUFFIX = "_gt.txt"


def region_line(frame_name: str, track_id: int, x1: int, y1: int, x2: int, y2: int) -> str:
    """The file line of an inclusive box; the reader's conversion gives the same box back."""
    # w = x2 - x1 and cx = (x1 + x2) / 2 make floor(cx - w/2) = x1 and ceil(x1 + w) = x2 exactly.
    return f"{frame_name} {track_id:d} {(x1 + x2) / 2:.1f} {(y1 + y2) / 2:.1f} {x2 - x1:d} {y2 - y1:d}"


def write_region_file(path: Path, lines: Iterable[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    Path(path).write_text(text)


def _number(name: str) -> int:
    """The last run of digits in a name (`001.tif` -> 1, `Test01_gt` -> 1, `05` -> 5)."""
    digits = re.findall(r"\d+", name)
    if not digits:
        raise ValueError(f"no number in {name!r}")
    return int(digits[-1])


def read_region_file(path: Path, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """(K, 6) array [frame, x1, y1, x2, y2, track id] of one file; frame 0-based within the video."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) != 6:
                raise ValueError(f"{len(fields)} fields, not 6")
            frame = _number(Path(fields[0]).stem) - 1
            track = int(float(fields[1]))
            cx, cy, w, h = (float(f) for f in fields[2:])
        except ValueError as error:
            raise VECError(f"{path}, line {number}: expected '<frame file> <track id> <cx> <cy> <width> "
                           f"<height>' ({error}); see docs/region_ground_truth.md") from None
        x1, y1 = math.floor(cx - w / 2), math.floor(cy - h / 2)
        rows.append([frame, x1, y1, math.ceil(x1 + w), math.ceil(y1 + h), track])
    regions = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    regions[:, 1:3] = np.clip(regions[:, 1:3], 0, None)
    if frame_size is not None:
        height, width = frame_size
        regions[:, 3] = np.clip(regions[:, 3], None, width - 1)
        regions[:, 4] = np.clip(regions[:, 4], None, height - 1)
    return regions


def read_region_ground_truth(paths_by_video: Mapping[int, Path | str],
                             frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """(M, 7) array [video, frame, x1, y1, x2, y2, track_id] for `rbdc_tbdc`.

    paths_by_video maps a 1-based video number (as in frame_video_idx) to its file; a
    video without a file has no regions. Frames are 0-based within their video; track
    ids are renumbered 0, 1, ... in (video, file track id) order, so they are unique over
    the test set. frame_size (height, width) clips boxes to the frame, as the widely used
    reader does.
    """
    parts = []
    for video in sorted(paths_by_video):
        regions = read_region_file(Path(paths_by_video[video]), frame_size)
        parts.append(np.column_stack([np.full(len(regions), float(video)), regions]))
    result = np.concatenate(parts) if parts else np.zeros((0, 7))
    if len(result):
        _, global_track = np.unique(result[:, [0, 6]], axis=0, return_inverse=True)
        result[:, 6] = global_track.ravel()
    return result


def region_files(folder: Path, video_names: Sequence[str]) -> dict[int, Path]:
    """Match the `*_gt.txt` files of a folder to videos: by name, else by the number in their names.

    `Test001_gt.txt` belongs to video `Test001` (its name, UCSDped2); `Test01_gt.txt` or
    `Test1_gt.txt` to video `01` (its number, Avenue). Returns {1-based video number: path};
    videos without a file are left out. A file that fits no video, or a video another file
    already has, is a one-line error naming that file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VECError(f"region ground-truth folder {folder} not found; put one <video>{FILE_SUFFIX} "
                       "per test video there (docs/region_ground_truth.md)")
    video_of_name = {name: index for index, name in enumerate(video_names, start=1)}
    result: dict[int, Path] = {}
    by_number = []
    for path in sorted(folder.glob("*" + FILE_SUFFIX)):
        stem = path.name[:-len(FILE_SUFFIX)]
        if stem in video_of_name:
            result[video_of_name[stem]] = path
        else:
            by_number.append(path)
    videos = ", ".join(video_names)
    for path in by_number:
        digits = re.findall(r"\d+", path.name[:-len(FILE_SUFFIX)])
        if not digits:
            raise VECError(f"{path} is named after no test video (videos {videos}) and holds no video number; "
                           f"rename it <video>{FILE_SUFFIX} or remove it")
        number = int(digits[-1])
        candidates = [index for name, index in video_of_name.items() if re.findall(r"\d+", name)
                      and int(re.findall(r"\d+", name)[-1]) == number]
        if not candidates:
            raise VECError(f"{path} matches no test video by name or number {number} (videos {videos}); "
                           f"rename it <video>{FILE_SUFFIX} or remove it")
        if len(candidates) > 1:
            raise VECError(f"{path}: its number {number} fits videos "
                           f"{' and '.join(video_names[i - 1] for i in candidates)}; rename it <video>{FILE_SUFFIX}")
        video = candidates[0]
        if video in result:
            raise VECError(f"{path} is named after no test video, and its number {number} is that of video "
                           f"{video_names[video - 1]}, which has {result[video].name}; rename {path.name} "
                           f"<video>{FILE_SUFFIX} for its video or remove it")
        result[video] = path
    return result
