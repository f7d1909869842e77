"""The flow and detection networks as the benchmarks run them: stand-in weights (no checkpoint is
needed, here or on a lent GPU machine) and the precisions torch.autocast supports on the device."""
from __future__ import annotations

import torch

from support.stand_in_weights import det_fill
from utils.infra.errors import VECError
from utils.infra.precision import check_precision

STAND_IN = "det_fill stand-in weights (no checkpoint needed): speed only, not accuracy"


def with_stand_in_weights(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` with det_fill weights (those of the parity tests' golden vectors), on `device`, in eval mode."""
    model.load_state_dict(det_fill(model.state_dict()))
    return model.to(device).eval()


def usable_precisions(requested: list[str], device: torch.device) -> list[str]:
    """The precisions of `requested` that torch.autocast supports on `device`, in order; each one it does not
    is printed with its reason and left out."""
    usable = []
    for precision in requested:
        try:
            check_precision(precision, device)
            usable.append(precision)
        except VECError as err:
            print(f"  skipped: {err}")
    return usable
