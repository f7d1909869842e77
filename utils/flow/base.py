"""The flow convention every backend follows (docs/method.md §2), owned by one base class.

Frames are resized to 512x384, the flow is computed there and resized back to the frame
size WITHOUT rescaling the vectors, as the reference's FlowNet2 run did. A backend only
implements `compute` on frames already at 512x384; batching is the caller's
(`compute_split_flow` hands it one chunk at a time).
"""
from __future__ import annotations

import cv2
import numpy as np

FLOW_SIZE = (512, 384)  # (W, H) the flow is computed at


def resize_to_flow_size(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, FLOW_SIZE) for f in frames])


def resize_flow_back(flows: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, h, w, 2) → (B, H, W, 2), vectors left in the units they were computed in."""
    return np.stack([cv2.resize(f, (width, height)) for f in flows]).astype(np.float32)


class FlowBackend:
    """`backend(first, second) -> flow`: (B, H, W, 3) uint8 BGR frames → (B, H, W, 2) float32 flow
    from first to second, at the frames' size, in 512x384 pixel units."""

    def compute(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(B, 384, 512, 3) uint8 BGR → (B, 384, 512, 2) float32."""
        raise NotImplementedError

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[1:3]
        return resize_flow_back(self.compute(resize_to_flow_size(first), resize_to_flow_size(second)), height, width)
