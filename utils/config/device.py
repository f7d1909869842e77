"""`device = ...` checked against what PyTorch sees: `resolve_device` (auto → cuda or cpu; one-line errors)."""
from __future__ import annotations

import torch

from utils.infra.errors import VECError


def resolve_device(name: str) -> str:
    """`auto` picks CUDA when present, else the CPU; a device that does not exist is a one-line error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VECError(f"device = {name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise VECError(f"device = {name} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VECError(f"device = {name} was asked for but PyTorch sees no CUDA GPU; set device = auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VECError(f"device = {name} does not exist: PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return name
