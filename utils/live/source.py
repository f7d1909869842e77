"""Where live frames come from: a camera, a network stream or a file, read on a thread of its own.

`parse_source` tells a camera index (`0`), a stream URL (`rtsp://…`, `http://…/video.mjpg`)
and a video file apart; `open_capture` opens it with OpenCV (FFmpeg with open and read
time-outs for a stream, so a dead camera cannot hang the reader); `FrameReader` reads it
frame by frame into the ring (utils/live/ring.py), a file at its own frame rate, and when
a camera or stream stops, reopens it up to `retries` times, one line per try, with growing
pauses. A reopened source starts a new segment: frames on either side of a break are not
neighbours.

An MJPEG stream is read packet by packet (OpenCV's raw mode): each JPEG is checked whole (it
ends with the EOI marker) and decoded on its own, so a cut or broken JPEG is skipped and
counted instead of scored as FFmpeg fills it in, and a change of frame size is seen (FFmpeg's
own capture rescales every frame to the first one's size). `mask_credentials` hides passwords
and tokens in a URL everywhere it is shown.
"""
from __future__ import annotations

import base64
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# FFmpeg's own complaints about a stream ("Connection refused", "Stream ends prematurely")
# would interleave with this program's lines; every such case is reported here, in one line.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from utils.infra.errors import VECError  # noqa: E402
from utils.live.ring import Arrival, StreamRing  # noqa: E402
from utils.live.status import DelayStats  # noqa: E402
from utils.own_video.source import NAME_BYTES  # noqa: E402

OPEN_TIMEOUT_MS = 10_000  # a stream that gives nothing for this long counts as stopped
READ_TIMEOUT_MS = 10_000
DEFAULT_FILE_FPS = 25.0  # a file without a frame rate is played at this one
# A source that keeps sending parts none of which decodes counts as stopped (a try of --retries) after
# this many broken parts in a row, or this many seconds without a decodable frame, whichever comes first.
BROKEN_IN_A_ROW = 25
NO_FRAME_SECONDS = READ_TIMEOUT_MS / 1000
# Frames with more pixels are scored downscaled to this many (Full HD): VEC's boxes and cubes need no
# more, and a 6000x4000 camera would otherwise take seconds a frame and gigabytes in the ring.
MAX_FRAME_PIXELS = 1920 * 1080
# Query parameters whose name holds one of these words carry a secret (IP cameras take `pwd=`, `token=`, …).
SECRET_WORDS = ("pass", "pwd", "token", "key", "auth", "secret", "sig", "session", "credential")
MASK = "***"


def mask_credentials(text: str) -> str:
    """`text` with a URL's password (user info) and the values of query parameters named like a secret
    replaced by ***; anything that is not a URL comes back as it is."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        user = user_info.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in user_info else f"{user_info}@{host}"

    def masked(pair: str) -> str:
        name, equals, value = pair.partition("=")
        secret = any(word in unquote_plus(name).lower() for word in SECRET_WORDS)
        return f"{name}={MASK}" if secret and equals and value else pair

    query = re.sub(r"[^&;]+", lambda m: masked(m.group(0)), parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


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
        """`given` with a URL's password and secret query values replaced by ***, for the terminal and run.json."""
        return mask_credentials(self.given) if self.kind == "stream" else self.given

    @property
    def reopens(self) -> bool:
        """Cameras and streams are reopened when they stop; a file ends."""
        return self.kind != "file"


def _safe_name(text: str) -> str:
    """ASCII letters, digits, '.', '_' and '-', at most NAME_BYTES long (the bound --video's folder names
    keep), so a 300-character URL path or file name still makes a valid results folder."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:NAME_BYTES].strip("._") or "stream"


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


def reads_jpeg_packets(capture: cv2.VideoCapture, source: LiveSource) -> bool:
    """Switch an MJPEG stream's capture to raw packets (one JPEG each, checked and decoded by
    `decode_jpeg`); False, the capture decoding as usual, for cameras, files and other codecs."""
    if source.kind != "stream":
        return False
    fourcc = (int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF).to_bytes(4, "little")
    return fourcc == b"MJPG" and bool(capture.set(cv2.CAP_PROP_FORMAT, -1))


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """The BGR frame of one whole JPEG; None when it is cut short or does not decode.

    A JPEG cut short still decodes (FFmpeg and libjpeg alike fill in the missing part and the
    frame would be scored as if the camera showed that), so it must start with SOI and end with
    EOI (FFD8 … FFD9, padding aside): cheap, and what a cut transfer always breaks. It is decoded
    by FFmpeg (a data: URI), the decoder `--video` uses on an MJPEG file, so live frames have the
    very pixels `--video` gets (cv2.imdecode's libjpeg differs by up to 32 grey levels), at the
    real size of each JPEG.
    """
    body = bytes(data).rstrip(b"\r\n\t \x00")
    if len(body) < 4 or body[:2] != b"\xff\xd8" or body[-2:] != b"\xff\xd9":
        return None
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    capture = cv2.VideoCapture("data:image/jpeg;base64," + base64.b64encode(body).decode("ascii"), cv2.CAP_FFMPEG)
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
        cv2.utils.logging.setLogLevel(level)
    return frame if ok and frame is not None and frame.size else None


def fit_frame(frame: np.ndarray, max_pixels: int) -> np.ndarray:
    """`frame` downscaled (same aspect) to at most `max_pixels` pixels; as it is when it has no more."""
    height, width = frame.shape[:2]
    if height * width <= max_pixels:
        return frame
    scale = math.sqrt(max_pixels / (height * width))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class FrameReader(threading.Thread):
    """Reads `capture` into `ring` until the source ends, the reopening tries run out, or `stop()`.

    `say` prints one line (reopening, size changes, downscaling); `retries` bounds the reopening
    tries in a row without a usable frame in between (a source that opens but gives only broken
    frames uses them up too). Broken JPEGs of an MJPEG stream are skipped and counted in `broken`.
    Frames over `max_pixels` pixels are downscaled. The reader always ends the last segment and
    closes the ring, passing on its own exception if it fails.
    """

    def __init__(self, source: LiveSource, capture: cv2.VideoCapture, ring: StreamRing, *, retries: int,
                 say: Callable[[str], None], max_pixels: int = MAX_FRAME_PIXELS) -> None:
        super().__init__(name="live-reader", daemon=True)
        self.source, self.capture, self.ring = source, capture, ring
        self.retries, self.say, self.max_pixels = retries, say, max_pixels
        self.stopping = threading.Event()
        self.lost = False  # the source stopped and could not be reopened
        self.broken = 0  # JPEGs skipped: cut short or not decodable
        self.tries = 0  # reopening tries since the last usable frame
        self._downscaled: set[tuple[int, ...]] = set()  # frame sizes already said to be downscaled
        self.decode_seconds = DelayStats()  # decoding each JPEG of an MJPEG stream

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
        packets = reads_jpeg_packets(self.capture, self.source)
        broken_in_a_row, last_frame = 0, time.monotonic()
        while not self.stopping.is_set():
            ok, frame = self.capture.read()
            stopped = None if ok and frame is not None else ""
            if stopped is None and packets:
                decoding = time.perf_counter()
                frame = decode_jpeg(frame.tobytes())
                self.decode_seconds.add(time.perf_counter() - decoding)
                if frame is None:
                    self.broken += 1
                    broken_in_a_row += 1
                    if broken_in_a_row >= BROKEN_IN_A_ROW:
                        stopped = f"{broken_in_a_row} broken JPEGs in a row (cut short or not decodable)"
                    elif time.monotonic() - last_frame >= NO_FRAME_SECONDS:
                        stopped = f"no decodable frame for {NO_FRAME_SECONDS:g} s"
                    else:
                        continue
            if stopped is not None:
                self._end(segment, index)
                segment, index, size = segment + (index > 0), 0, None
                if not self.source.reopens:
                    return
                self.capture.release()
                self.capture = self._reopen(number, stopped)
                if self.capture is None:
                    return
                packets = reads_jpeg_packets(self.capture, self.source)
                broken_in_a_row, last_frame = 0, time.monotonic()
                continue
            broken_in_a_row, last_frame, self.tries = 0, time.monotonic(), 0
            if size is not None and frame.shape != size:
                self.say(f"the frame size changed from {size[1]}x{size[0]} to {frame.shape[1]}x{frame.shape[0]} "
                         f"at frame {number}: a new segment starts")
                self._end(segment, index)
                segment, index = segment + 1, 0
            size = frame.shape
            frame = self._fit(frame, number)
            if fps is not None:  # a file plays at its own rate
                started = time.monotonic() if started is None else started
                if self.stopping.wait(max(0.0, started + number / fps - time.monotonic())):
                    break
            self.ring.put(Arrival(segment, index, number, time.monotonic(), frame))
            index, number = index + 1, number + 1
        self._end(segment, index)

    def _fit(self, frame: np.ndarray, number: int) -> np.ndarray:
        fitted = fit_frame(frame, self.max_pixels)
        if fitted is not frame and frame.shape not in self._downscaled:
            self._downscaled.add(frame.shape)
            self.say(f"frames of {frame.shape[1]}x{frame.shape[0]} are scored downscaled to "
                     f"{fitted.shape[1]}x{fitted.shape[0]} (at most {self.max_pixels} pixels: VEC needs no more, and "
                     f"larger frames take seconds and gigabytes), from frame {number}")
        return fitted

    def _end(self, segment: int, length: int) -> None:
        if length:
            self.ring.end_segment(segment, length)

    def _reopen(self, frames_read: int, why: str = "") -> cv2.VideoCapture | None:
        stopped = why or (f"stream stopped after frame {frames_read - 1}" if frames_read else "stream gave no frame")
        if self.retries == 0:
            self.say(f"{stopped}; not reopening it (--retries 0)")
            self.lost = True
            return None
        while self.tries < self.retries:
            self.tries += 1
            pause = retry_pause(self.tries)
            self.say(f"{stopped}: reopening {self.source.shown} in {pause:g} s (try {self.tries} of {self.retries})")
            if self.stopping.wait(pause):
                return None
            capture = open_capture(self.source)
            if capture is not None:
                self.say(f"reopened {self.source.shown}: frames from {frames_read} on are a new segment")
                return capture
            stopped = "cannot open it"
        tries = f"{self.retries} {'try' if self.retries == 1 else 'tries'}"
        if stopped == "cannot open it":
            self.say(f"{self.source.shown} could not be reopened after {tries}; stopping")
        else:  # it opened each time but gave no usable frame
            self.say(f"{stopped}; {self.source.shown} gave no usable frame since it was reopened ({tries}); stopping")
        self.lost = True
        return None
