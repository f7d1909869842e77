"""The hand-over from the thread that reads the stream to the scorer: a bounded ring of frames.

The scorer scores frames t, t+k, t+2k, … of each segment (k: the stride, utils/live/
stride.py); frame t needs frames t-4 … t+1 (utils/live/context.py). The reader offers every
frame it decodes; the ring keeps a frame only when the window of a frame still to be
scored holds it, so memory is a few windows whatever the stream's length and rate:

- a frame no window needs is let go at once;
- when more than `max_waiting` frames to score have their window complete (the scorer is
  behind), the oldest are given up (`dropped`), so a score is never more than a few
  strides late; and at most `capacity` frames are held: a new frame beyond that gives up
  the oldest frame to score too. A given-up frame's frames go unless a later window needs them.

Frames come in segments (a segment ends when the source stops; a reopened source starts
the next one, numbered in order); a frame's window never reaches into another segment.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

RING_FRAMES = 24  # frames held at most: about a second at 25 frames/s


class StreamEnded(Exception):
    """`StreamRing.take`: the reader has closed and every frame to score has been handed out."""


@dataclass
class Arrival:
    """One decoded frame as the reader hands it over."""

    segment: int  # 0, 1, … : which unbroken stretch of the stream
    index: int  # its position in that segment
    number: int  # its position in the whole stream (frames read before it)
    time: float  # time.monotonic() when it was read
    frame: np.ndarray  # BGR uint8


@dataclass
class Target:
    """A frame to score and the frames of its window (segment index → Arrival)."""

    arrival: Arrival
    frames: dict[int, Arrival]
    length: int | None  # the segment's length when it has ended, else None


class StreamRing:
    """Thread-safe: the reader calls `put`, `end_segment` and `close`; the scorer `take` and `set_stride`."""

    def __init__(self, capacity: int, lookback: int, lookahead: int = 1, max_waiting: int | None = None) -> None:
        if capacity < lookback + lookahead + 2:
            raise ValueError(f"capacity {capacity} is below a window of {lookback + lookahead + 1} frames")
        self.capacity, self.lookback, self.lookahead = capacity, lookback, lookahead
        self.max_waiting = max_waiting
        self.stride = 1
        self.segment, self.next = 0, 0  # the next frame to score
        self.slots: dict[tuple[int, int], Arrival] = {}
        self.latest: dict[int, int] = {}  # segment → highest index read
        self.lengths: dict[int, int] = {}  # segment → length, once it has ended
        self.closed, self.error = False, None
        self.frames_in = self.dropped = self.peak_held = self.segments = 0
        self.dropped_late = 0  # of which after the stream's first second (before it, the speed is still unknown)
        self._first_arrival: float | None = None
        self._arrivals: deque[float] = deque(maxlen=64)
        self._changed = threading.Condition()

    # ---- reader side ----------------------------------------------------------------------

    def put(self, arrival: Arrival) -> None:
        with self._changed:
            self.frames_in += 1
            self._arrivals.append(arrival.time)
            if self._first_arrival is None:
                self._first_arrival = arrival.time
            self.latest[arrival.segment] = arrival.index
            self.segments = max(self.segments, arrival.segment + 1)
            if not self._needed(arrival.segment, arrival.index):
                return
            self.slots[(arrival.segment, arrival.index)] = arrival
            while len(self.slots) > self.capacity:  # the scorer is behind: give up the oldest frame to score
                self._advance_segment()
                self._count_drop()
                self._plan_after(self.next)
            self.peak_held = max(self.peak_held, len(self.slots))
            self._changed.notify_all()

    def end_segment(self, segment: int, length: int) -> None:
        with self._changed:
            if length > 0:
                self.lengths[segment] = length
            self._changed.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more frames; `error` (the reader's exception) is raised by `take`."""
        with self._changed:
            for segment, latest in self.latest.items():
                self.lengths.setdefault(segment, latest + 1)  # what was read is all there is
            self.closed, self.error = True, error
            self._changed.notify_all()

    # ---- scorer side ----------------------------------------------------------------------

    def take(self, timeout: float) -> Target | None:
        """The next frame to score with its window, once complete; None after `timeout` seconds
        without one. Raises StreamEnded when the reader has closed and nothing is left, and the
        reader's own exception when it failed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.error is not None:
                    raise self.error
                self._advance_segment()
                self._give_up_late()
                target = self._ready()
                if target is not None:
                    self._plan_after(target.arrival.index)
                    return target
                if self.closed and self.segment not in self.latest:
                    raise StreamEnded
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def set_stride(self, stride: int, scored: Arrival | None = None) -> tuple[int, int]:
        """Score frames `stride` apart from now on: from the frame `scored` (the last one scored), or else
        from the next one planned. Returns (segment, index) of the next frame planned: frames before it
        that were taken already (prepared ahead under the old stride) are not part of the new plan."""
        with self._changed:
            self.stride = max(1, int(stride))
            if scored is not None and scored.segment == self.segment and scored.index < self.next:
                self._plan_after(scored.index)
            return self.segment, self.next

    def arrival_rate(self) -> float | None:
        """Frames per second over the last frames read (None before two)."""
        with self._changed:
            if len(self._arrivals) < 2 or self._arrivals[-1] <= self._arrivals[0]:
                return None
            return (len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0])

    # ---- the plan (called with the lock held) ------------------------------------------------

    def _needed(self, segment: int, index: int) -> bool:
        """Whether a window of a frame still to be scored holds this frame."""
        if segment < self.segment:
            return False
        base = self.next if segment == self.segment else 0
        if index < base - self.lookback:
            return False
        # The first frame to score at or after index - lookahead; its window starts lookback before it.
        steps = max(0, -(-(index - self.lookahead - base) // self.stride))
        return base + steps * self.stride - self.lookback <= index

    def _count_drop(self) -> None:
        self.dropped += 1
        if self._arrivals and self._arrivals[-1] - self._first_arrival > 1.0:  # the stream's time, by its arrivals
            self.dropped_late += 1

    def _advance_segment(self) -> None:
        """Past the end of an ended segment the plan moves on to the start of the next."""
        while self.segment in self.lengths and self.next >= self.lengths[self.segment]:
            del self.lengths[self.segment]
            self.latest.pop(self.segment, None)
            self.segment, self.next = self.segment + 1, 0

    def _give_up_late(self) -> None:
        """Drop the oldest frames to score while more than `max_waiting` have their window complete."""
        if self.max_waiting is None:
            return
        while True:
            length = self.lengths.get(self.segment)
            last = length - 1 if length is not None else self.latest.get(self.segment, -1) - self.lookahead
            if last < self.next or (last - self.next) // self.stride + 1 <= self.max_waiting:
                return
            self._count_drop()
            self._plan_after(self.next)
            self._advance_segment()

    def _ready(self) -> Target | None:
        segment, t = self.segment, self.next
        length = self.lengths.get(segment)
        latest = self.latest.get(segment, -1)
        if latest < t + self.lookahead and length is None:
            return None
        if (segment, t) not in self.slots:
            return None
        first, last = t - self.lookback, t + self.lookahead
        frames = {j: self.slots[(segment, j)] for j in range(max(0, first), last + 1) if (segment, j) in self.slots}
        return Target(self.slots[(segment, t)], frames, length)

    def _plan_after(self, t: int) -> None:
        """The next frame to score is the first from t + stride whose window lost no frame already read
        (after a change of stride, a frame skipped under the old one may sit in a new window)."""
        latest = self.latest.get(self.segment, -1)
        candidate = t + self.stride
        while True:
            window = range(max(0, candidate - self.lookback), min(candidate + self.lookahead, latest) + 1)
            if all((self.segment, j) in self.slots for j in window):
                break
            candidate += 1
        self.next = candidate
        self.slots = {key: arrival for key, arrival in self.slots.items() if self._needed(*key)}
