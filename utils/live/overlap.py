"""Two frames at once: the next frame is prepared on a thread while this one's networks run.

A live frame's score is its flows, boxes and cubes (`FrameScorer.prepare`: OpenCV and numpy,
which release the interpreter while they compute) and then the cloze networks
(`FrameScorer.finish`: torch, on LIVE_CPU_THREADS intra-op threads). Run one after the
other, one CPU core waits while the other works; `Preparer` takes the frames to score (from
the ring) and prepares each on a thread of its own, handing at most `AHEAD` prepared frames
to the scoring thread. The scores are the same: each frame is prepared and finished exactly
as `FrameScorer.score` does, in the order the ring plans them.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

from utils.live.ring import StreamEnded, Target
from utils.live.scorer import FrameScorer, PreparedFrame

# Prepared frames waiting for the networks. When the networks fall behind, the waiting frames go
# through them together (`FrameScorer.finish_all`), which costs less than one at a time.
AHEAD = 2


def taking(targets: Iterator[Target]) -> Callable[[float], Target]:
    """A ring's `take` over an iterator of targets: the next one; StreamEnded when it is exhausted."""

    def take(timeout: float) -> Target:
        try:
            return next(targets)
        except StopIteration:
            raise StreamEnded() from None

    return take


class _Ended:
    """What the preparing thread hands over last: the stream ended, or the error that stopped it."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Preparer:
    """Prepares the ring's frames to score on a thread: `get` returns them in order,
    `waiting` those ready behind the one `get` returned.

    `take(timeout)` gives the next frame to score (a `Target`), None when none is ready yet, and
    raises StreamEnded at the end: a ring's `take`, or `taking(targets)` of an iterator of them."""

    def __init__(self, take: Callable[[float], Target | None], scorer: FrameScorer, poll: float = 0.2) -> None:
        self.take, self.scorer, self.poll = take, scorer, poll
        self._ready: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vec-live-prepare", daemon=True)

    def start(self) -> "Preparer":
        self._thread.start()
        return self

    def get(self, timeout: float) -> PreparedFrame | None:
        """The next prepared frame; None after `timeout` seconds without one. Raises StreamEnded when
        the stream is over and every frame was handed out, or the error the preparing thread met."""
        try:
            item = self._ready.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Ended):
            self._ready.put(item)  # every later call sees the end too
            if item.error is not None:
                raise item.error
            raise StreamEnded()
        return item

    def waiting(self) -> list[PreparedFrame]:
        """The prepared frames ready now, without waiting (the end of the stream stays for `get`)."""
        ready = []
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                return ready
            if isinstance(item, _Ended):
                self._ready.put(item)
                return ready
            ready.append(item)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                target = self.take(timeout=self.poll)
                if target is not None:
                    self._hand_over(self.scorer.prepare(target))
        except StreamEnded:
            self._hand_over(_Ended())
        except BaseException as err:  # the scoring thread raises it
            self._hand_over(_Ended(err))

    def _hand_over(self, item) -> None:
        while not self._stopping.is_set():
            try:
                self._ready.put(item, timeout=self.poll)
                return
            except queue.Full:
                continue


class InLine:
    """A `Preparer` without the thread: each frame prepared when it is asked for, then finished; the
    serial way, which benchmarks/live.py compares with the overlapped one."""

    def __init__(self, take: Callable[[float], Target | None], scorer: FrameScorer) -> None:
        self.take, self.scorer = take, scorer

    def start(self) -> "InLine":
        return self

    def get(self, timeout: float) -> PreparedFrame | None:
        target = self.take(timeout)
        return None if target is None else self.scorer.prepare(target)

    def waiting(self) -> list[PreparedFrame]:
        return []

    def stop(self) -> None:
        pass
