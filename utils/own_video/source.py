"""A user's video as VEC input: what it is, what it is called, what identifies its content, and its frames.

    probe_source       is PATH a video OpenCV decodes, or a folder of frames, with enough frames?
    clean_name         a file stem or folder name made safe for a path (Unicode letters kept)
    folder_key         <clean name>-<8 hex digits of the path's SHA-256>: the work and results folder of a source
    source_identity    path + SHA-256 of the bytes (of every frame file, for a folder)
    extract_frames     decode once, frame by frame, into <folder>/00000000.png … + source.json (atomic)
    video_split        a VideoSplit over such frames folders, one video per folder

Nothing here holds a whole video in memory: frames are decoded and written one at a time.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from utils.datasets.split import VideoSplit
from utils.infra.errors import VECError, VECWarning
from utils.infra.io import atomic_dir, sha256_file, user_error_for, write_json
from utils.infra.video_frames import VideoFile, declared_properties, iter_video_frames

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
FRAME_NAME = "{:08d}.png"  # extracted frames: lossless, sorted by name = sorted by time
SOURCE_FILE = "source.json"  # inside a frames folder: where its frames came from
# Frame rates a video can be written with (mp4v's time base allows at most 65535 ticks a second).
MIN_FPS, MAX_FPS = 0.01, 1000.0
NAME_BYTES = 100  # a clean name's longest UTF-8 form: with the suffixes VEC adds, file names stay < 255 bytes


@dataclass(frozen=True)
class VideoSource:
    """A user's video: a file OpenCV decodes, or a folder of frames sorted by file name."""

    path: Path  # absolute
    name: str  # what the video is called in titles and messages: its file stem or folder name, cleaned
    frame_files: tuple[Path, ...] | None  # a folder's frames in order; None for a video file

    @property
    def is_folder(self) -> bool:
        return self.frame_files is not None

    @property
    def key(self) -> str:
        """Its folder under data/videos/ and results/videos/ (unique per source path)."""
        return folder_key(self.path)


def clean_name(path: Path) -> str:
    """A file's stem or a folder's name with anything but letters, digits, '.', '_' and '-' replaced by '_'.

    Letters and digits of any script are kept (NFC-normalised) where the file system encodes
    them; else they are replaced too. At most NAME_BYTES bytes.
    """
    path = Path(path)
    try:
        is_folder = path.is_dir()
    except OSError:  # a name too long to look up is no folder of frames
        is_folder = False
    stem = unicodedata.normalize("NFC", path.name if is_folder else path.stem)
    name = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    try:
        name.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    while len(name.encode()) > NAME_BYTES:
        name = name[:-1]
    return name or "video"


def folder_key(path: Path) -> str:
    """`<clean name>-<first 8 hex digits of the SHA-256 of the absolute path>`: sources with the same
    name at different places get different folders; the same path always the same one."""
    path = Path(path).expanduser().resolve()
    return f"{clean_name(path)}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def _frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
                   and p.is_file()), key=lambda p: p.name)


def probe_source(path: Path, min_frames: int) -> VideoSource:
    """Check that `path` is a video file OpenCV decodes or a folder of frames, with at least `min_frames` frames.

    Reads at most `min_frames` frames, so it is cheap for a long video; every failure is one
    VECError naming the path.
    """
    path = Path(path).expanduser()
    context = f"VEC needs at least {min_frames} frames (its temporal context)"
    if not path.exists():
        raise VECError(f"{path} not found; pass a video file or a folder of frames")
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise VECError(f"{path} is a folder without frames ({', '.join(FRAME_SUFFIXES)}); "
                           "pass a video file or a folder of frames")
        if len(files) < min_frames:
            raise VECError(f"{path} holds {len(files)} frames; {context}")
        if cv2.imread(str(files[0])) is None:
            raise VECError(f"frame {files[0]} cannot be read as an image; replace or remove it")
        return VideoSource(path.resolve(), clean_name(path), tuple(files))
    with VideoFile(path, cannot_open=f"{path} is neither a video OpenCV can decode nor a folder of frames "
                   "(convert it to .mp4 or .avi, or pass a folder of frames)") as video:
        decoded = sum(1 for _ in itertools.islice(video.frames(), min_frames))
    if decoded == 0:
        raise VECError(f"{path}: OpenCV opens the file but cannot decode a frame of it (corrupt file or "
                       "unsupported codec); convert it to .mp4 or .avi, or pass a folder of frames")
    if decoded < min_frames:
        raise VECError(f"{path} has {decoded} frames; {context}")
    return VideoSource(path.resolve(), clean_name(path), None)


def source_identity(source: VideoSource) -> dict:
    """What identifies a source's content: its path and the SHA-256 of its bytes (for a folder, of
    every frame file's name and bytes, in order). Frames, flow, boxes and cubes made from a source
    are reused only while this is unchanged; size and modification time are not trusted."""
    if not source.is_folder:
        return {"path": str(source.path), "sha256": sha256_file(source.path)}
    digest = hashlib.sha256()
    for file in source.frame_files:
        digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
    return {"path": str(source.path), "n_files": len(source.frame_files), "sha256": digest.hexdigest()}


def iter_source_frames(source: VideoSource) -> Iterator[np.ndarray]:
    """The source's frames, BGR uint8, one at a time (a video is decoded once, in order)."""
    if source.is_folder:
        for file in source.frame_files:
            frame = cv2.imread(str(file))
            if frame is None:
                raise VECError(f"frame {file} cannot be read as an image; replace or remove it")
            yield frame
        return
    # Probed already: a file that no longer opens gives no frames, and extract_frames says it has too few.
    yield from iter_video_frames(source.path, must_open=False)


def container_properties(source: VideoSource) -> tuple[float | None, int | None]:
    """(frames per second, frame count) as the file's container declares them; None where it
    declares none (or a rate no video can be written with). A folder: (None, its number of files)."""
    if source.is_folder:
        return None, len(source.frame_files)
    declared = declared_properties(source.path, must_open=False)
    fps = declared.fps
    if fps is not None and not MIN_FPS <= fps <= MAX_FPS:
        warnings.warn(f"{source.path} declares {fps:g} frames per second, outside {MIN_FPS:g}…{MAX_FPS:g}; "
                      "its results use --fps instead", VECWarning, stacklevel=2)
        fps = None
    return fps, declared.frames


def read_frames_info(frames_dir: Path) -> dict | None:
    stamp = Path(frames_dir) / SOURCE_FILE
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def check_frame_count(source: VideoSource, info: dict, accept_short: bool) -> bool:
    """Whether the source decoded to fewer frames than its container declares, which is an error
    unless `accept_short` (some containers declare a wrong count; a cut file declares the full one)."""
    declared, decoded = info.get("declared_frames"), info["n_frames"]
    if declared is None or decoded >= declared:
        return False
    if not accept_short:
        raise VECError(f"{source.path}: {decoded} frames decode but its container declares {declared}; the file "
                       "looks cut (an interrupted copy or download?): use the complete file, or pass "
                       "--accept-short-video if this container is known to declare a wrong count")
    warnings.warn(f"{source.path}: {decoded} of the {declared} frames its container declares decode; scoring "
                  "those (--accept-short-video)", VECWarning, stacklevel=2)
    return True


def extract_frames(source: VideoSource, frames_dir: Path, min_frames: int, accept_short: bool = False,
                   progress: bool = True) -> tuple[dict, bool]:
    """Decode `source` into `frames_dir` as lossless PNGs, unless it holds the frames of this very source.

    Returns (info, extracted): info = {"source": source_identity, "n_frames", "declared_frames" (the
    container's count; None when it gives none), "short" (fewer frames decode than declared), "width",
    "height", "fps" (the file's, None for a folder)}, stored as `frames_dir/source.json`. Fewer
    frames than declared is an error unless `accept_short` (check_frame_count). The folder is
    built under a hidden name and renamed when complete (utils.infra.io.atomic_dir), so an
    interrupted or failed decode leaves no frames folder behind.
    """
    frames_dir = Path(frames_dir)
    identity = source_identity(source)
    info = read_frames_info(frames_dir)
    if info is not None and info.get("source") == identity and "declared_frames" in info:
        check_frame_count(source, info, accept_short)
        return info, False
    fps, declared = container_properties(source)
    size = None
    with atomic_dir(frames_dir) as partial:
        count = 0
        bar = tqdm(total=declared, desc=f"frames ({source.name})", unit="frame", disable=not progress)
        for frame in iter_source_frames(source):
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                where = source.frame_files[count] if source.is_folder else f"frame {count} of {source.path}"
                raise VECError(f"{where} is {frame.shape[1]}x{frame.shape[0]} but the frames before it are "
                               f"{size[1]}x{size[0]}; all frames of a video must share one size")
            _write_frame(partial / FRAME_NAME.format(count), frame, f"frame {count} of {source.path}")
            count += 1
            bar.update(1)
        bar.close()
        if count < min_frames:
            raise VECError(f"{source.path} has {count} frames that decode; VEC needs at least {min_frames} "
                           "(its temporal context)")
        info = {"source": identity, "n_frames": count, "declared_frames": declared, "width": int(size[1]),
                "height": int(size[0]), "fps": fps}
        info["short"] = check_frame_count(source, info, accept_short)
        write_json(partial / SOURCE_FILE, info)
    return info, True


def _write_frame(path: Path, frame: np.ndarray, what: str) -> None:
    """A PNG written with Python's own file calls, so a failed write has an errno to explain it."""
    ok, encoded = cv2.imencode(".png", frame)
    if not ok:
        raise VECError(f"cannot encode {what} as PNG (OpenCV's encoder failed)")
    try:
        with open(path, "wb") as f:
            f.write(encoded.tobytes())
    except OSError as err:
        raise (user_error_for(err, path) or VECError(f"cannot write {what} to {path} ({err.strerror})")) from None


def video_split(dataset_dir: Path, videos: list[str], split: str) -> VideoSplit:
    """A split of the frames folders `dataset_dir/frames/<video>/` (one video each, frames sorted by name)."""
    dataset_dir = Path(dataset_dir)
    frames: list[Path] = []
    video_idx: list[int] = []
    for number, video in enumerate(videos, start=1):
        files = sorted((dataset_dir / "frames" / video).glob("*.png"), key=lambda p: p.name)
        if not files:
            raise VECError(f"{dataset_dir / 'frames' / video} holds no frames; delete it and rerun")
        frames += files
        video_idx += [number] * len(files)
    return VideoSplit(dataset_dir, split, frames, np.asarray(video_idx, dtype=np.int64), list(videos))
