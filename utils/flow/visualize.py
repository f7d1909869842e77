"""Optical flow as a colour image (Middlebury colour wheel: hue = direction, saturation = magnitude)."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import flow_to_image as _torchvision_flow_to_image


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) float flow → (H, W, 3) uint8 RGB; zero flow is white, normalised by the largest vector."""
    tensor = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)
    return _torchvision_flow_to_image(tensor).permute(1, 2, 0).numpy()
