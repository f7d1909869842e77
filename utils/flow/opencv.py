"""DIS and Farneback optical flow from OpenCV: no weights, fast on a CPU (not the paper's flow).

The pairs of a batch are computed side by side, one pair per core, each on one OpenCV thread:
OpenCV's own threads split one small image poorly (a DIS pair of 768x576 frames took 32 ms with
two of them, 25 ms with one, and two pairs side by side 14 ms a pair, on the 2-core CPU). Each
pair's flow is the same whichever way it is computed.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from utils.flow.base import FlowBackend


class OpenCVFlow(FlowBackend):
    WORKERS: int | None = None  # pairs computed side by side; None: one per core (benchmarks set 1 to compare)

    def __init__(self, method: str = "dis", workers: int | None = None) -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"OpenCV flow method must be dis or farneback, not {method!r}")
        self.method = method
        self.workers = workers or self.WORKERS or os.cpu_count() or 1
        self._local = threading.local()  # a DIS object holds buffers: one per thread
        self._pool: ThreadPoolExecutor | None = None

    def _one(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (first, second))
        if self.method == "dis":
            if not hasattr(self._local, "dis"):
                self._local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            return self._local.dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def compute(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if len(first) < 2 or self.workers < 2:
            return np.stack([self._one(a, b) for a, b in zip(first, second)])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vec-flow")
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return np.stack(list(self._pool.map(self._one, first, second)))
        finally:
            cv2.setNumThreads(threads)
