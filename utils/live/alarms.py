"""Alarms from frame scores: an event starts when a score exceeds the threshold and ends once the
scores have stayed at or below it for `min_gap` seconds, so one anomaly is one alarm.

An event runs from its first to its last frame above the threshold. It ends at the first
scored frame `min_gap` seconds or more after its last frame above the threshold, provided a
frame at or below the threshold has been scored since; two frames above it with none below
in between are always the same event, however far apart (a slow camera, a large stride).
`count_events` counts the events of a finished score series by the same rule (the
calibration's count).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Event:
    number: int  # 1, 2, … in this run
    start_frame: int
    start_s: float
    end_frame: int  # the last frame above the threshold
    end_s: float
    peak_frame: int
    peak_s: float
    peak_score: float

    def as_dict(self) -> dict:
        return asdict(self)


class AlarmTracker:
    def __init__(self, threshold: float, min_gap: float) -> None:
        self.threshold, self.min_gap = threshold, min_gap
        self.open: Event | None = None
        self.count = 0
        self._below = False  # a frame at or below the threshold since the open event's last frame above it

    def update(self, frame: int, time_s: float, score: float) -> tuple[Event | None, bool]:
        """Feed one scored frame (in time order). Returns (the event that ended before it, or None;
        whether this frame is now the peak of the open event)."""
        ended, above = None, score > self.threshold
        self._below = self._below or not above
        if self.open is not None and self._below and time_s - self.open.end_s >= self.min_gap:
            ended, self.open = self.open, None
        if not above:
            return ended, False
        self._below = False
        if self.open is None:
            self.count += 1
            self.open = Event(self.count, frame, time_s, frame, time_s, frame, time_s, score)
            return ended, True
        self.open.end_frame, self.open.end_s = frame, time_s
        if score > self.open.peak_score:
            self.open.peak_frame, self.open.peak_s, self.open.peak_score = frame, time_s, score
            return ended, True
        return ended, False

    def finish(self) -> Event | None:
        """The open event, ended because the stream did."""
        ended, self.open = self.open, None
        return ended


def count_events(scores: np.ndarray, times: np.ndarray, threshold: float, min_gap: float) -> int:
    """How many events `AlarmTracker` raises on these scores (times in seconds, increasing)."""
    above = np.flatnonzero(np.asarray(scores) > threshold)
    if len(above) == 0:
        return 0
    far_apart = np.diff(np.asarray(times, dtype=np.float64)[above]) >= min_gap
    return 1 + int(np.sum(far_apart & (np.diff(above) > 1)))
