"""A video file's frames as OpenCV decodes them: the one place that opens a video file and reads it.

    VideoFile            `with VideoFile(path) as video:` its capture: video.declared, video.frames()
    Declared             what the container declares: frame count, frames per second, width, height
    declared_properties  a file's Declared, the file opened only for that
    iter_video_frames    a file's frames, BGR uint8, one at a time in decoding order
    read_video_frames    all of them in a list (a short clip)

Every frame is `cv2.VideoCapture(str(path)).read()` until a read fails, so frames decoded here
equal those of any other OpenCV loop over the file. A file OpenCV cannot open is one VECError
line (the caller may word it); with `must_open=False` it declares nothing and gives no frames,
as OpenCV itself has it. Live cameras and streams are utils/live/source.py's (reconnects).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# FFmpeg prints its own complaints ("moov atom not found") on stderr when OpenCV probes a file
# that is not a video; VEC reports such files itself, in one line. OpenCV reads the setting when
# it first opens a video, so setting it here (before any capture) works.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from utils.infra.errors import VECError  # noqa: E402


@dataclass(frozen=True)
class Declared:
    """What a video's container says about it (before any frame is decoded; it may be wrong)."""

    frames: int | None  # frame count; None where it declares none
    fps: float | None  # frames per second; None where it declares none (any positive rate, unchecked)
    width: int  # 0 where it declares none
    height: int


class VideoFile:
    """A video file opened by OpenCV; released on leaving the `with` block (or by `close`).

    `cannot_open`: the VECError's line when OpenCV cannot open the file (default: a generic one);
    `must_open=False`: no error, the file then declares nothing and gives no frames.
    """

    def __init__(self, path: str | Path, *, cannot_open: str | None = None, must_open: bool = True) -> None:
        self.path = Path(path).expanduser()
        self._capture = cv2.VideoCapture(str(self.path))
        if must_open and not self._capture.isOpened():
            self.close()
            raise VECError(cannot_open or f"OpenCV cannot open {self.path} as a video (not a video file, a damaged "
                                          "one or an unsupported codec); convert it to .mp4 or .avi")

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._capture.release()

    @property
    def declared(self) -> Declared:
        count, fps = self._capture.get(cv2.CAP_PROP_FRAME_COUNT), self._capture.get(cv2.CAP_PROP_FPS)
        return Declared(frames=int(count) if math.isfinite(count) and count > 0 else None,
                        fps=fps if math.isfinite(fps) and fps > 0 else None,
                        width=int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                        height=int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames(self) -> Iterator[np.ndarray]:
        """The frames from where the capture stands, BGR uint8, until one fails to decode (the file's end)."""
        while True:
            ok, frame = self._capture.read()
            if not ok:
                return
            yield frame


def declared_properties(path: str | Path, *, cannot_open: str | None = None, must_open: bool = True) -> Declared:
    """What the container of `path` declares (its frame count, rate and size); no frame is decoded."""
    with VideoFile(path, cannot_open=cannot_open, must_open=must_open) as video:
        return video.declared


def iter_video_frames(path: str | Path, *, cannot_open: str | None = None,
                      must_open: bool = True) -> Iterator[np.ndarray]:
    """Every frame OpenCV decodes from `path`, one at a time (nothing else held in memory)."""
    with VideoFile(path, cannot_open=cannot_open, must_open=must_open) as video:
        yield from video.frames()


def read_video_frames(path: str | Path, *, cannot_open: str | None = None, must_open: bool = True) -> list[np.ndarray]:
    """Every frame OpenCV decodes from `path`, in memory: for short clips."""
    return list(iter_video_frames(path, cannot_open=cannot_open, must_open=must_open))
