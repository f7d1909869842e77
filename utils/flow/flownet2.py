"""FlowNet2 as a flow backend, and loading the official checkpoint (the paper's flows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from FlowNet2_src import FlowNet2
from utils.infra.errors import VECError
from utils.flow.base import FlowBackend
from utils.infra.io import load_state_dict_file
from utils.infra.precision import autocast, check_precision
from utils.weights import WEIGHTS, check_before_use, missing_hint

DEFAULT_CHECKPOINT = WEIGHTS["flownet2"].default_path


def load_flownet2(checkpoint_path: str | Path | None = None, device: str | torch.device = "cpu") -> FlowNet2:
    """FlowNet2 with the official weights, in eval mode, on `device`.

    The file is a dict whose `state_dict` holds the network's weights; every key must load
    (strict), and nothing but tensors and plain values is unpickled (weights_only=True).
    """
    path = Path(checkpoint_path) if checkpoint_path is not None else DEFAULT_CHECKPOINT
    check_before_use("flownet2", path)
    state = load_state_dict_file(path, f"{missing_hint('flownet2')}, or set flow_method = dis (no weights needed)")
    if state is None:
        raise VECError(f"{path} is not a FlowNet2 checkpoint (expected a dict with a 'state_dict')")
    model = FlowNet2()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise VECError(f"{path} does not hold FlowNet2's weights ({first})") from None
    return model.to(device).eval()


class FlowNet2Flow(FlowBackend):
    """Frames fed as float 0..255, (B, 3, 2, 384, 512), as the reference fed them.

    `precision` (flow_precision): fp32 (the reference's numbers), or fp16 / bf16 under torch.autocast;
    the flow returned is float32 either way (docs/performance.md: its measured effect)."""

    def __init__(self, model: FlowNet2, device: str = "cpu", precision: str = "fp32") -> None:
        check_precision(precision, device, "flow_precision")
        self.model, self.device, self.precision = model.to(device).eval(), device, precision

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, device: str = "cpu", precision: str = "fp32"
                        ) -> "FlowNet2Flow":
        return cls(load_flownet2(path, device), device, precision)

    @torch.inference_mode()
    def compute(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        pair = torch.from_numpy(np.stack([first, second], axis=1))  # B, 2, h, w, 3 uint8
        # Sent as uint8 and made float on the device: a quarter of the bytes to copy and no float
        # copy on the host; the same values (and strides) as a float conversion before the copy.
        inputs = pair.to(self.device).float().permute(0, 4, 1, 2, 3)
        with autocast(self.precision, self.device):
            flow = self.model(inputs)
        return flow.permute(0, 2, 3, 1).float().cpu().numpy()
