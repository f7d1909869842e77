"""Where live frames come from: a camera, a network stream or a file, read on a thread of its own.

`parse_source` tells a camera index (`0`), a stream URL (`rtsp://…`, `http://…/video.mjpg`)
and a video file apart; `open_capture` opens it with OpenCV (FFmpeg with open and read
time-outs for a stream, so a dead camera cannot hang the reader); `FrameReader` reads it
frame by frame into the ring (utils/live/ring.py), a file at its own frame rate, and when
a camera or stream stops, reopens it up to `retries` times, one line per try, with growing
pauses. A reopened source starts a new segment: frames on either side of a break are not
neighbours.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

# FFmpeg's own complaints about a stream ("Connection refused", "Stream ends prematurely")
# would interleave with this program's lines; every such case is reported here, in one line.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

from utils.errors import VECError  # noqa: E402
from utils.live.ring import Arrival, StreamRing  # noqa: E402

OPEN_TIMEOUT_MS = 10_000  # a stream that gives nothing for this long counts as stopped
READ_TIMEOUT_MS = 10_000
DEFAULT_FILE_FPS = 25.0  # a file without a frame rate is played at this one


def retry_pause(attempt: int) -> float:
    """Seconds before reopening try `attempt` (1, 2, …): 0.5, 1, 2, 4, 8, then 10."""
    return min(0.5 * 2 ** (attempt - 1), 10.0)


@dataclass(frozen=True)
class LiveSource:
    given: str  # as the user wrote it
    kind: str  # "camera", "stream" or "file"
    target: int | str  # what cv2.VideoCapture opens
    name: str  # part of the results folder's name

    @property
    def shown(self) -> str:
        """`given` with a URL's password replaced by ***, for the terminal and run.json."""
        parts = urlsplit(self.given) if self.kind == "stream" else None
        if parts is None or parts.password is None:
            return self.given
        netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def reopens(self) -> bool:
        """Cameras and streams are reopened when they stop; a file ends."""
        return self.kind != "file"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "stream"


def parse_source(text: str) -> LiveSource:
    """A camera index, a URL (`scheme://…`) or a path to a video file; a missing file is a VECError."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return LiveSource(text, "camera", int(text), f"camera{int(text)}")
    if "://" in text:
        parts = urlsplit(text)
        host = parts.hostname or "stream"
        name = _safe_name("_".join(p for p in (host, str(parts.port or ""), Path(parts.path).stem) if p))
        return LiveSource(text, "stream", text, name)
    path = Path(text).expanduser()
    if path.is_dir():
        raise VECError(f"--live {path} is a folder; pass a camera index (0), a stream URL (rtsp://…, http://…) "
                       "or a video file (score a folder of frames with --video)")
    if not path.exists() and "%" not in path.name:  # OpenCV also opens numbered image sequences, img_%04d.png
        raise VECError(f"--live {path} not found; pass a camera index (0), a stream URL (rtsp://…, http://…) "
                       "or a video file")
    return LiveSource(text, "file", str(path), _safe_name(path.stem))


def open_capture(source: LiveSource) -> cv2.VideoCapture | None:
    """The opened capture, or None (OpenCV's own warnings silenced: the caller says what failed)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        if source.kind == "stream":
            capture = cv2.VideoCapture(source.target, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
        else:
            capture = cv2.VideoCapture(source.target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if capture.isOpened():
        return capture
    capture.release()
    return None


def cannot_open(source: LiveSource) -> VECError:
    hint = {"camera": f"no camera with index {source.target} can be opened (is it connected and not in use by "
                      "another program? try 0, 1, …)",
            "stream": "check the URL, that the camera is on and reachable from here, and its user name and password",
            "file": "OpenCV cannot decode it; convert it to .mp4 or .avi"}[source.kind]
    return VECError(f"cannot open {source.shown}: {hint}")


def capture_fps(capture: cv2.VideoCapture) -> float | None:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0 < fps < 1000 else None


def file_fps(path: Path) -> float | None:
    """A video file's frame rate (None when it gives none)."""
    capture = open_capture(LiveSource(str(path), "file", str(path), ""))
    if capture is None:
        return None
    try:
        return capture_fps(capture)
    finally:
        capture.release()


class FrameReader(threading.Thread):
    """Reads `capture` into `ring` until the source ends, the reopening tries run out, or `stop()`.

    `say` prints one line (reopening, size changes); `retries` bounds the reopening tries per
    stop. The reader always ends the last segment and closes the ring, passing on its own
    exception if it fails.
    """

    def __init__(self, source: LiveSource, capture: cv2.VideoCapture, ring: StreamRing, *, retries: int,
                 say: Callable[[str], None]) -> None:
        super().__init__(name="live-reader", daemon=True)
        self.source, self.capture, self.ring = source, capture, ring
        self.retries, self.say = retries, say
        self.stopping = threading.Event()
        self.lost = False  # the source stopped and could not be reopened

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            self._read()
        except BaseException as err:  # handed to the scorer's thread, which raises it
            self.ring.close(err)
        else:
            self.ring.close()
        finally:
            if self.capture is not None:
                self.capture.release()

    def _read(self) -> None:
        segment = index = number = 0
        size = None
        fps = (capture_fps(self.capture) or DEFAULT_FILE_FPS) if self.source.kind == "file" else None
        started = None
        while not self.stopping.is_set():
            ok, frame = self.capture.read()
            if not ok or frame is None:
                self._end(segment, index)
                segment, index, size = segment + (index > 0), 0, None
                if not self.source.reopens:
                    return
                self.capture.release()
                self.capture = self._reopen(number)
                if self.capture is None:
                    return
                continue
            if size is not None and frame.shape != size:
                self.say(f"the frame size changed from {size[1]}x{size[0]} to {frame.shape[1]}x{frame.shape[0]} "
                         f"at frame {number}: a new segment starts")
                self._end(segment, index)
                segment, index = segment + 1, 0
            size = frame.shape
            if fps is not None:  # a file plays at its own rate
                started = time.monotonic() if started is None else started
                if self.stopping.wait(max(0.0, started + number / fps - time.monotonic())):
                    break
            self.ring.put(Arrival(segment, index, number, time.monotonic(), frame))
            index, number = index + 1, number + 1
        self._end(segment, index)

    def _end(self, segment: int, length: int) -> None:
        if length:
            self.ring.end_segment(segment, length)

    def _reopen(self, frames_read: int) -> cv2.VideoCapture | None:
        stopped = f"stream stopped after frame {frames_read - 1}" if frames_read else "stream gave no frame"
        if self.retries == 0:
            self.say(f"{stopped}; not reopening it (--retries 0)")
            self.lost = True
            return None
        for attempt in range(1, self.retries + 1):
            pause = retry_pause(attempt)
            self.say(f"{stopped}: reopening {self.source.shown} in {pause:g} s (try {attempt} of {self.retries})")
            if self.stopping.wait(pause):
                return None
            capture = open_capture(self.source)
            if capture is not None:
                self.say(f"reopened {self.source.shown}: frames from {frames_read} on are a new segment")
                return capture
            stopped = "cannot open it"
        self.say(f"{self.source.shown} could not be reopened after {self.retries} "
                 f"{'try' if self.retries == 1 else 'tries'}; stopping")
        self.lost = True
        return None
