"""RAFT (torchvision's raft_large) as a flow backend, with a local weights file.

Not the paper's flow; a modern alternative under the same convention (computed at
512x384, resized back without rescaling the vectors).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.optical_flow import raft_large

from utils.checkpoints import load_torch_file
from utils.errors import VECError
from utils.flow import resize_flow_back, resize_to_flow_size

WEIGHTS_URL = "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth"


class RaftEstimator:
    """`(first, second) -> flow` on batches of BGR uint8 frames (B, H, W, 3) → (B, H, W, 2) float32."""

    def __init__(self, weights_path: str | Path, device: str = "cpu", batch_size: int = 4) -> None:
        path = Path(weights_path)
        if not path.is_file():
            raise VECError(f"RAFT weights {path} not found: download {WEIGHTS_URL} into FlowNet2_src/pretrained/, "
                           "or set flow_method = dis (no weights needed)")
        model = raft_large(weights=None, progress=False)
        try:
            model.load_state_dict(load_torch_file(path))
        except RuntimeError:
            raise VECError(f"{path} does not hold torchvision raft_large weights") from None
        self.model, self.device, self.batch_size = model.to(device).eval(), device, batch_size

    def _prepare(self, frames: np.ndarray) -> torch.Tensor:
        rgb = resize_to_flow_size(frames)[..., ::-1].copy()  # BGR → RGB, as the weights were trained
        tensor = torch.from_numpy(rgb).permute(0, 3, 1, 2).to(self.device, torch.float32)
        return tensor / 127.5 - 1.0  # [-1, 1], torchvision's OpticalFlow transform

    @torch.inference_mode()
    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[1:3]
        flows = []
        for start in range(0, len(first), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            predictions = self.model(self._prepare(first[chunk]), self._prepare(second[chunk]))
            flows.append(predictions[-1].permute(0, 2, 3, 1).float().cpu().numpy())
        return resize_flow_back(np.concatenate(flows), height, width)
