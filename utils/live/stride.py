"""How many frames apart to score: the smallest stride the measured speed keeps up with.

Scoring frame t costs its flows plus the rest (boxes, cubes, networks). Windows of frames
scored k apart share flows when k < 5 (a window holds `flows_per_frame` flows, one new per
frame), so a scored frame costs

    cost(k) = flow · min(k, flows_per_frame) + rest

with `flow` and `rest` the medians over the last frames scored. When the next frame is
prepared while this one's networks run (`overlapped`, utils/live/overlap.py), a frame costs
the slower of the two stages instead:

    cost(k) = max(flow · min(k, flows_per_frame) + rest − networks, networks)

Frames arriving at `rate` per second leave k / rate seconds per scored frame; the stride is
the smallest k with cost(k) ≤ 0.85 · k / rate (0.7 for the first choice, made on a few
measurements). It rises as soon as the current stride falls behind (cost(k) > 1.1 · k / rate,
or frames had to be dropped: two within 2 s), and falls only when a smaller one fits with a
wide margin (0.6) and the current one has held for a while, so that it stays steady.

Overlapped, each stage has a core of its own and its measured time already includes the other
running beside it, so a stage may fill more of the time between frames: the first choice keeps
every frame unless that is already behind (cost(1) > 1.1 / rate), a stride that falls behind
rises by one while the next keeps up at 1.1 (each stage's time was measured beside the other's
load, which a larger stride lightens), and a smaller stride is taken when it fits at 0.85. A smaller stride that then falls behind within the hold time is tried
again only after twice as long each time (so a stride at the edge does not flip every 10 s).
"""
from __future__ import annotations

import statistics
from collections import deque

HEADROOM = 0.85  # the share of the time between scored frames that scoring may take
FIRST_HEADROOM = 0.7  # the first choice, on a few measurements, leaves more room
BEHIND = 1.1  # the current stride has fallen behind when scoring takes this share, or when
DROPS_BEHIND, DROP_WINDOW = 2, 2.0  # this many frames were dropped within this many seconds (one is a hiccup)
LOWER_BELOW = 0.6  # a smaller stride is taken only if it would use less than this share
OVERLAPPED_LOWER_BELOW = 0.85  # the same, when the stages overlap (each stage's time is measured beside the other)
HOLD_SECONDS = 10.0  # and the current stride has held this long
SAMPLES = 15  # medians over this many scored frames
FIRST_DECISION = 5  # frames scored (with flows computed for at least 3) before the first decision
MAX_STRIDE = 1000


class StridePolicy:
    def __init__(self, flows_per_frame: int, overlapped: bool = False) -> None:
        self.flows_per_frame, self.overlapped = flows_per_frame, overlapped
        self.stride = 1
        self.decided = False
        self._flow: deque[float] = deque(maxlen=SAMPLES)
        self._rest: deque[float] = deque(maxlen=SAMPLES)
        self._networks: deque[float] = deque(maxlen=SAMPLES)
        self._changed_at = None
        self._dropped = 0
        self._drops: deque[float] = deque()  # when the recent drops were seen
        self._hold = HOLD_SECONDS  # before a smaller stride is tried; doubles each time one falls behind
        self._lowered_at: float | None = None  # when the stride was last lowered

    def record(self, flows: int, flow_seconds: float, other_seconds: float, network_seconds: float = 0.0) -> None:
        """One scored frame's timings (its flows computed, their time, the rest, of which the networks)."""
        if flows:
            self._flow.append(flow_seconds / flows)
        self._rest.append(other_seconds)
        self._networks.append(network_seconds)

    def medians(self) -> tuple[float, float]:
        """(seconds per flow, seconds for the rest of a frame) over the last frames scored; NaN before any."""
        return (statistics.median(self._flow) if self._flow else float("nan"),
                statistics.median(self._rest) if self._rest else float("nan"))

    def cost(self, stride: int) -> float | None:
        """Seconds to score one frame at `stride` (None before any measurement)."""
        if not self._rest:
            return None
        flow = statistics.median(self._flow) if self._flow else 0.0
        serial = flow * min(stride, self.flows_per_frame) + statistics.median(self._rest)
        if not self.overlapped:
            return serial
        networks = statistics.median(self._networks)
        return max(serial - networks, networks)

    def fitting(self, rate: float, share: float) -> int:
        """The smallest stride whose scoring takes at most `share` of the time between scored frames."""
        for stride in range(1, MAX_STRIDE + 1):
            if self.cost(stride) <= share * stride / rate:
                return stride
        return MAX_STRIDE

    def decide(self, now: float, rate: float | None, dropped: int) -> int | None:
        """The new stride when it should change, else None. `rate`: frames arriving per second;
        `dropped`: frames given up so far (utils/live/ring.py)."""
        if rate is None or len(self._rest) < FIRST_DECISION or len(self._flow) < 3:
            return None
        self._drops.extend([now] * (dropped - self._dropped))
        self._dropped = dropped
        while self._drops and now - self._drops[0] > DROP_WINDOW:
            self._drops.popleft()
        behind = self.cost(self.stride) > BEHIND * self.stride / rate or len(self._drops) >= DROPS_BEHIND
        wanted = self.fitting(rate, HEADROOM)
        lower_below = OVERLAPPED_LOWER_BELOW if self.overlapped else LOWER_BELOW
        if not self.decided:
            keeps_up = self.overlapped and self.cost(1) <= BEHIND / rate
            stride = 1 if keeps_up else self.fitting(rate, FIRST_HEADROOM)
        elif behind:
            step = self.stride + 1  # overlapped, the next stride up, while it keeps up: the stages share the cores
            stride = (step if self.overlapped and self.cost(step) <= BEHIND * step / rate
                      else max(wanted, self.stride + (wanted <= self.stride)))
            if self._lowered_at is not None and now - self._lowered_at < self._hold:
                self._hold *= 2  # the last lowering did not hold: wait longer before the next
        elif now - self._changed_at >= self._hold and self.fitting(rate, lower_below) < self.stride:
            stride = self.fitting(rate, lower_below)
        else:
            return None
        stride = min(stride, MAX_STRIDE)
        if self.decided and stride == self.stride:
            return None
        self._lowered_at = now if self.decided and stride < self.stride else None
        self.decided, self.stride, self._changed_at = True, stride, now
        self._drops.clear()  # drops under the old stride say nothing about the new one
        return stride
