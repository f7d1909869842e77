"""The terminal during a live run, and the delay statistics it shows.

`Terminal.say` prints a lasting line (an alarm, a reconnect, a change of stride) from any
thread; `Terminal.status` keeps one carriage-return line up to date on a terminal (frames
in / scored / dropped, delay), redrawn under each lasting line and cleared at the end.
Where stderr is not a terminal (a log file, a test), there is no status line.

`DelayStats` holds the arrival-to-score delays in fixed memory: a histogram with 1 % wide
bins over the whole run (median and 95th percentile within 1 %) and the last few hundred
for the status line.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque

import numpy as np

STATUS_EVERY = 0.25  # seconds between redraws of the status line


class DelayStats:
    LOWEST, HIGHEST, STEP = 1e-4, 1e4, 1.01  # seconds; bin edges grow by 1 %

    def __init__(self, recent: int = 200) -> None:
        self._bins = np.zeros(int(math.log(self.HIGHEST / self.LOWEST) / math.log(self.STEP)) + 2, dtype=np.int64)
        self.recent: deque[float] = deque(maxlen=recent)
        self.count = 0

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.count += 1
        position = math.log(max(seconds, self.LOWEST) / self.LOWEST) / math.log(self.STEP)
        self._bins[min(int(position), len(self._bins) - 1)] += 1

    def percentile(self, q: float) -> float:
        """The q-th percentile over the whole run (the middle of its bin); NaN before any delay."""
        if self.count == 0:
            return math.nan
        rank = np.searchsorted(np.cumsum(self._bins), q / 100 * self.count)
        return self.LOWEST * self.STEP ** (min(rank, len(self._bins) - 1) + 0.5)

    def recent_percentile(self, q: float) -> float:
        return float(np.percentile(self.recent, q)) if self.recent else math.nan


def milliseconds(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


class Terminal:
    def __init__(self, out=None, status_out=None, show_status: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.status_out = status_out or sys.stderr
        self.show_status = self.status_out.isatty() if show_status is None else show_status
        self._line, self._drawn_at = "", 0.0
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            self._clear()
            print(line, file=self.out, flush=True)
            self._draw()

    def status(self, line: str, force: bool = False) -> None:
        with self._lock:
            self._line = line
            if force or time.monotonic() - self._drawn_at >= STATUS_EVERY:
                self._draw()

    def close(self) -> None:
        with self._lock:
            self._clear()
            self._line = ""

    def _clear(self) -> None:
        if self.show_status and self._line:
            self.status_out.write("\r\033[K")
            self.status_out.flush()

    def _draw(self) -> None:
        if self.show_status and self._line:
            self.status_out.write("\r\033[K" + self._line)
            self.status_out.flush()
            self._drawn_at = time.monotonic()
