"""Your own videos as VEC input, and what a user looks at afterwards (issue 12).

    probe_source            is PATH a video OpenCV decodes, or a folder of frames, with enough frames?
    extract_frames          decode once, frame by frame, into <folder>/00000000.png … + source.json (atomic)
    video_split             a VideoSplit over such frames folders, one video per folder
    read_labels             a per-frame 0/1 labels file (.txt or .npy)
    normalise_scores        min-max over the frames that have a box
    write_frame_scores_csv  frame, time_s, score, normalised_score
    plot_video_scores       the score over time (PNG)
    write_annotated_video   every frame with its boxes coloured by score and a running score curve (mp4v)

Nothing here holds a whole video in memory: frames are decoded, written, read, drawn and
encoded one at a time; what grows with a video's length is a few numbers per frame.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# FFmpeg prints its own complaints ("moov atom not found") on stderr when OpenCV probes a
# file that is not a video; this code reports such files itself, in one line. OpenCV reads
# the setting when it first opens a video, so setting it here (before any capture) works.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from utils.cubes import ceil_box  # noqa: E402
from utils.datasets.split import VideoSplit  # noqa: E402
from utils.errors import VECError  # noqa: E402
from utils.io import atomic_dir, atomic_file, make_dirs, write_json  # noqa: E402
from utils.scoring import NO_BOX_SCORE  # noqa: E402

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
FRAME_NAME = "{:08d}.png"  # extracted frames: lossless, sorted by name = sorted by time
SOURCE_FILE = "source.json"  # inside a frames folder: where its frames came from


@dataclass(frozen=True)
class VideoSource:
    """A user's video: a file OpenCV decodes, or a folder of frames sorted by file name."""

    path: Path  # absolute
    name: str  # results/videos/<name>/: the file's stem or the folder's name, made safe for a path
    frame_files: tuple[Path, ...] | None  # a folder's frames in order; None for a video file

    @property
    def is_folder(self) -> bool:
        return self.frame_files is not None


def video_name(path: Path) -> str:
    """A file's stem or a folder's name, with anything but letters, digits, '.', '_' and '-' replaced by '_'."""
    path = Path(path)
    stem = path.name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"


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
        return VideoSource(path.resolve(), video_name(path), tuple(files))
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VECError(f"{path} is neither a video OpenCV can decode nor a folder of frames "
                           "(convert it to .mp4 or .avi, or pass a folder of frames)")
        decoded = 0
        while decoded < min_frames and capture.read()[0]:
            decoded += 1
    finally:
        capture.release()
    if decoded == 0:
        raise VECError(f"{path}: OpenCV opens the file but cannot decode a frame of it (corrupt file or "
                       "unsupported codec); convert it to .mp4 or .avi, or pass a folder of frames")
    if decoded < min_frames:
        raise VECError(f"{path} has {decoded} frames; {context}")
    return VideoSource(path.resolve(), video_name(path), None)


def source_fingerprint(source: VideoSource) -> dict:
    """What identifies a source's content cheaply: path, size and modification time (ns) of the file,
    or of every frame file of a folder (hashed). A change in any of them means "decode again"."""
    if not source.is_folder:
        stat = source.path.stat()
        return {"path": str(source.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    for file in source.frame_files:
        stat = file.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"path": str(source.path), "n_files": len(source.frame_files), "files": digest.hexdigest()}


def iter_source_frames(source: VideoSource) -> Iterator[np.ndarray]:
    """The source's frames, BGR uint8, one at a time (a video is decoded once, in order)."""
    if source.is_folder:
        for file in source.frame_files:
            frame = cv2.imread(str(file))
            if frame is None:
                raise VECError(f"frame {file} cannot be read as an image; replace or remove it")
            yield frame
        return
    capture = cv2.VideoCapture(str(source.path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def _video_properties(path: Path) -> tuple[float | None, int]:
    """(frames per second or None when the file gives none, the container's frame count estimate)."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return (fps if math.isfinite(fps) and fps > 0 else None), max(count, 0)


def read_frames_info(frames_dir: Path) -> dict | None:
    stamp = Path(frames_dir) / SOURCE_FILE
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def extract_frames(source: VideoSource, frames_dir: Path, min_frames: int, progress: bool = True) -> tuple[dict, bool]:
    """Decode `source` into `frames_dir` as lossless PNGs, unless it holds the frames of this very source.

    Returns (info, extracted): info = {"source": fingerprint, "n_frames", "width", "height",
    "fps" (the file's, None for a folder)}, stored as `frames_dir/source.json`. The folder is
    built beside its final name and renamed when complete (utils.io.atomic_dir), so an
    interrupted or failed decode leaves no frames folder behind.
    """
    frames_dir = Path(frames_dir)
    fingerprint = source_fingerprint(source)
    info = read_frames_info(frames_dir)
    if info is not None and info.get("source") == fingerprint:
        return info, False
    fps, estimate = (None, len(source.frame_files)) if source.is_folder else _video_properties(source.path)
    size = None
    with atomic_dir(frames_dir) as partial:
        count = 0
        bar = tqdm(total=estimate or None, desc=f"frames ({source.name})", unit="frame", disable=not progress)
        for frame in iter_source_frames(source):
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                where = source.frame_files[count] if source.is_folder else f"frame {count} of {source.path}"
                raise VECError(f"{where} is {frame.shape[1]}x{frame.shape[0]} but the frames before it are "
                               f"{size[1]}x{size[0]}; all frames of a video must share one size")
            if not cv2.imwrite(str(partial / FRAME_NAME.format(count)), frame):
                raise VECError(f"cannot write frame {count} of {source.path} into {frames_dir} (is the disk full?)")
            count += 1
            bar.update(1)
        bar.close()
        if count < min_frames:
            raise VECError(f"{source.path} has {count} frames that decode; VEC needs at least {min_frames} "
                           "(its temporal context)")
        info = {"source": fingerprint, "n_frames": count, "width": int(size[1]), "height": int(size[0]), "fps": fps}
        write_json(partial / SOURCE_FILE, info)
    return info, True


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


def read_labels(path: Path) -> np.ndarray:
    """Per-frame 0/1 labels: a `.txt` with one value per line (any whitespace) or a `.npy` array."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VECError(f"labels file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise VECError(f"labels file {path} is not a numpy array file ({str(err).splitlines()[0]})") from None
    elif suffix == ".txt":
        try:
            values = np.asarray([float(token) for token in path.read_text().split()])
        except (ValueError, UnicodeDecodeError):
            raise VECError(f"labels file {path} must hold one 0 or 1 per frame, separated by white space") from None
    else:
        raise VECError(f"labels file {path} must be a .txt (one 0 or 1 per line) or a .npy array")
    values = np.asarray(values).ravel()
    if values.dtype.kind not in "biuf":
        raise VECError(f"labels file {path} must hold numbers 0 and 1, not {values.dtype}")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if len(bad):
        raise VECError(f"labels file {path}: entry {bad[0]} is {values[bad[0]]!r}; every entry must be 0 or 1")
    return values.astype(np.int64)


def normalise_scores(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min-max normalised frame scores over the frames that have a box (0..1), NaN for the others.

    Returns (normalised, low, high); when every scored frame has the same score all are 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    has_box = scores > NO_BOX_SCORE
    normalised = np.full(len(scores), np.nan)
    if not has_box.any():
        return normalised, math.nan, math.nan
    low, high = float(scores[has_box].min()), float(scores[has_box].max())
    normalised[has_box] = (scores[has_box] - low) / (high - low) if high > low else 0.0
    return normalised, low, high


def write_frame_scores_csv(path: Path, scores: np.ndarray, normalised: np.ndarray, fps: float) -> None:
    """frame (0-based), time_s (frame / fps), score (the pipeline's; -100000 = no box), normalised_score
    (empty where the frame has no box). Scores are written in full precision (repr)."""
    with atomic_file(path, "w") as f:
        f.write("frame,time_s,score,normalised_score\n")
        for i, (score, norm) in enumerate(zip(scores, normalised)):
            f.write(f"{i},{i / fps:.6f},{float(score)!r},{'' if math.isnan(norm) else repr(float(norm))}\n")


def plot_video_scores(path: Path, scores: np.ndarray, fps: float, labels: np.ndarray | None, title: str) -> None:
    """The frame score over time (seconds); frames without a box are gaps, labelled anomalies shaded."""
    scores = np.asarray(scores, dtype=np.float64)
    times = np.arange(len(scores)) / fps
    values = np.where(scores > NO_BOX_SCORE, scores, np.nan)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    if labels is not None:
        ax.fill_between(times, 0, 1, where=np.asarray(labels) > 0, color="tab:red", alpha=0.2, step="mid",
                        transform=ax.get_xaxis_transform(), label="anomalous (labels)")
    ax.plot(times, values, color="tab:blue", lw=1, label="frame score")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("anomaly score")
    ax.set_xlim(0, max(times[-1], 1 / fps) if len(times) else 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def score_colour(value: float) -> tuple[int, int, int]:
    """BGR colour of a normalised score: green (0) → yellow (0.5) → red (1); grey for NaN."""
    if value is None or math.isnan(value):
        return (160, 160, 160)
    value = min(max(float(value), 0.0), 1.0)
    if value < 0.5:
        return (0, int(190 + 60 * value * 2), int(255 * value * 2))
    return (0, int(250 * (1 - value) * 2), 255)


class _ScoreStrip:
    """The running score curve: a semi-transparent strip at the bottom of each frame.

    The whole curve is drawn once (time runs left to right over the video's length) and
    each frame shows it up to its own time, with a cursor, so drawing costs the same on
    every frame whatever the video's length.
    """

    def __init__(self, normalised: np.ndarray, height: int, width: int) -> None:
        self.height = max(20, int(round(height * 0.2)))
        self.width = width
        pad = 3
        n = len(normalised)
        self.x = np.round(np.arange(n) * (width - 1) / max(n - 1, 1)).astype(np.int64)
        valid = ~np.isnan(normalised)
        y = pad + np.round((1 - np.nan_to_num(normalised)) * (self.height - 1 - 2 * pad)).astype(np.int64)
        self.layer = np.zeros((self.height, width, 3), np.uint8)
        for i in range(n):
            if not valid[i]:
                continue
            start = (int(self.x[i - 1]), int(y[i - 1])) if i > 0 and valid[i - 1] else (int(self.x[i]), int(y[i]))
            cv2.line(self.layer, start, (int(self.x[i]), int(y[i])), score_colour(normalised[i]), 1)
        self.mask = self.layer.any(axis=2)

    def draw(self, frame: np.ndarray, i: int, text: str) -> None:
        strip = frame[-self.height:]
        strip[:] = cv2.convertScaleAbs(strip, alpha=0.35)
        shown = int(self.x[i]) + 1
        mask = self.mask[:, :shown]
        strip[:, :shown][mask] = self.layer[:, :shown][mask]
        cv2.line(strip, (shown - 1, 0), (shown - 1, self.height - 1), (255, 255, 255), 1)
        cv2.putText(strip, text, (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)


def write_annotated_video(path: Path, frame_paths: list[Path], fps: float, normalised: np.ndarray,
                          cube_frame_index: np.ndarray, cube_boxes: np.ndarray, cube_normalised: np.ndarray,
                          progress: bool = True) -> None:
    """`path` (.mp4, fourcc mp4v): every frame at its size and the given rate, each scored box drawn in
    its score's colour (the frame's highest box labelled with its score), and the running score curve.

    Streams: one frame is read, drawn and encoded at a time. Written under a temporary name
    beside `path` and renamed when complete.
    """
    path = Path(path)
    first = cv2.imread(str(frame_paths[0]))
    height, width = first.shape[:2]
    strip = _ScoreStrip(np.asarray(normalised, dtype=np.float64), height, width)
    order = np.argsort(cube_frame_index, kind="stable")
    sorted_frames = np.asarray(cube_frame_index)[order]
    thickness = max(1, int(round(min(height, width) / 300)))
    make_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise VECError(f"cannot write {path}: OpenCV's video writer does not open (fourcc mp4v)")
        for i, frame_path in enumerate(tqdm(frame_paths, desc="annotated video", unit="frame", disable=not progress)):
            frame = cv2.imread(str(frame_path))
            if frame is None:
                raise VECError(f"frame {frame_path} is missing or corrupt; delete its folder and rerun")
            lo, hi = np.searchsorted(sorted_frames, i, "left"), np.searchsorted(sorted_frames, i, "right")
            members = order[lo:hi]
            top = members[np.argmax(cube_normalised[members])] if len(members) else -1
            for n in members:
                x1, y1, x2, y2 = ceil_box(cube_boxes[n])
                cv2.rectangle(frame, (x1, y1), (x2 - 1, y2 - 1), score_colour(cube_normalised[n]), thickness)
            if top >= 0:
                x1, y1, _, _ = ceil_box(cube_boxes[top])
                cv2.putText(frame, f"{cube_normalised[top]:.2f}", (max(0, x1), max(10, y1 - 3)),
                            cv2.FONT_HERSHEY_PLAIN, 0.8, score_colour(cube_normalised[top]), 1, cv2.LINE_AA)
            score = normalised[i]
            strip.draw(frame, i, f"{i / fps:.1f} s  " + ("no box" if math.isnan(score) else f"score {score:.2f}"))
            writer.write(frame)
        writer.release()
        os.replace(temporary, path)
    except BaseException:
        writer.release()
        Path(temporary).unlink(missing_ok=True)
        raise
