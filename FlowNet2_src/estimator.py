"""FlowNet2 as a flow backend of calc_img_inputs.py (the paper's flows, SPEC §2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from FlowNet2_src.checkpoint import load_flownet2
from FlowNet2_src.flownet2 import FlowNet2
from utils.flow import resize_flow_back, resize_to_flow_size


class FlowNet2Estimator:
    """`(first, second) -> flow` on batches of BGR uint8 frames (B, H, W, 3) → (B, H, W, 2) float32.

    Frames are resized to 512x384 and fed as float 0..255 (B, 3, 2, 384, 512); the flow is
    resized back to the frame size without rescaling the vectors, as the reference did.
    """

    def __init__(self, checkpoint_path: str | Path | None, device: str = "cpu", batch_size: int = 8) -> None:
        self._setup(load_flownet2(checkpoint_path, device), device, batch_size)

    @classmethod
    def from_model(cls, model: FlowNet2, device: str = "cpu", batch_size: int = 8) -> "FlowNet2Estimator":
        estimator = cls.__new__(cls)
        estimator._setup(model.to(device).eval(), device, batch_size)
        return estimator

    def _setup(self, model: FlowNet2, device: str, batch_size: int) -> None:
        self.model, self.device, self.batch_size = model, device, batch_size

    @torch.inference_mode()
    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[1:3]
        flows = []
        for start in range(0, len(first), self.batch_size):
            pair = np.stack([resize_to_flow_size(first[start:start + self.batch_size]),
                             resize_to_flow_size(second[start:start + self.batch_size])], axis=1)  # B, 2, h, w, 3
            inputs = torch.from_numpy(pair.astype(np.float32)).permute(0, 4, 1, 2, 3).to(self.device)
            flows.append(self.model(inputs).permute(0, 2, 3, 1).float().cpu().numpy())
        return resize_flow_back(np.concatenate(flows), height, width)
