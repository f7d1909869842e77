"""RAFT (torchvision's raft_large) as a flow backend, with a local weights file.

Not the paper's flow; a modern alternative under the same convention.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.optical_flow import raft_large

from utils.infra.errors import VECError
from utils.flow.base import FlowBackend
from utils.infra.io import load_torch_file
from utils.weights import check_before_use, missing_hint


class RaftFlow(FlowBackend):
    def __init__(self, model: torch.nn.Module, device: str = "cpu") -> None:
        self.model, self.device = model.to(device).eval(), device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "RaftFlow":
        path = Path(path)
        if not path.is_file():
            raise VECError(f"RAFT weights {path} not found: {missing_hint('raft')}, "
                           "or set flow_method = dis (no weights needed)")
        check_before_use("raft", path)
        model = raft_large(weights=None, progress=False)
        try:
            model.load_state_dict(load_torch_file(path))
        except RuntimeError:
            raise VECError(f"{path} does not hold torchvision raft_large weights") from None
        return cls(model, device)

    def _prepare(self, frames: np.ndarray) -> torch.Tensor:
        rgb = frames[..., ::-1].copy()  # BGR → RGB, as the weights were trained
        tensor = torch.from_numpy(rgb).permute(0, 3, 1, 2).to(self.device, torch.float32)
        return tensor / 127.5 - 1.0  # [-1, 1], torchvision's OpticalFlow transform

    @torch.inference_mode()
    def compute(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        predictions = self.model(self._prepare(first), self._prepare(second))
        return predictions[-1].permute(0, 2, 3, 1).float().cpu().numpy()
