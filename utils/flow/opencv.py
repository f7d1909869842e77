"""DIS and Farneback optical flow from OpenCV: no weights, fast on a CPU (not the paper's flow)."""
from __future__ import annotations

import cv2
import numpy as np

from utils.flow.base import FlowBackend


class OpenCVFlow(FlowBackend):
    def __init__(self, method: str = "dis") -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"OpenCV flow method must be dis or farneback, not {method!r}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def _one(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (first, second))
        if self._dis is not None:
            return self._dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def compute(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return np.stack([self._one(a, b) for a, b in zip(first, second)])
