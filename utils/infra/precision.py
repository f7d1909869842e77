"""Reduced precision for the flow and detection networks (`flow_precision`, `detector_precision`).

    fp32   the reference's numbers: no autocast context at all
    fp16   torch.autocast(device, float16)
    bf16   torch.autocast(device, bfloat16)

The networks' outputs go back to float32 in the adapters, and box arithmetic stays in float32
inside the networks (models/cascade_rcnn/), so only the convolutions and matrix products run in
half. docs/performance.md gives the measured effect (benchmarks/precision.py).
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from utils.infra.errors import VECError, VECWarning

PRECISIONS = ("fp32", "fp16", "bf16")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: str | torch.device, what: str = "precision",
                    allowed: tuple[str, ...] = PRECISIONS) -> None:
    """One-line VECError unless `precision` is one of `allowed` and torch.autocast supports it on `device`
    here; a one-line warning where it would run emulated (`warn_if_emulated`). The one check of a
    precision setting: the config, the flow and detector adapters and the cloze steps all call it."""
    if precision not in allowed:
        raise VECError(f"{what} = {precision} is not one of {', '.join(allowed)}")
    if precision == "fp32":
        return
    device_type = torch.device(device).type
    reason = None
    try:
        # An unsupported dtype either raises or warns and turns autocast off; both mean "not here".
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.autocast(device_type, dtype=DTYPES[precision]):
                enabled = torch.is_autocast_enabled(device_type)
        if not enabled:
            reason = str(caught[0].message).splitlines()[0] if caught else "autocast stays off"
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
    if reason is not None:
        raise VECError(f"{what} = {precision} is not supported by torch {torch.__version__} autocast on "
                       f"{device_type} ({reason}); use fp32 or another of {', '.join(allowed)}")
    warn_if_emulated(precision, device, what)


def check_precision_applies(precision: str, what: str, chooser: str, chosen: str, network: str) -> None:
    """fp16 / bf16 only for the network that honours it: `what` (flow_precision, or where it was written)
    applies when `chooser` (flow_method) is `network` (flownet2); `chosen` is what it is."""
    if precision != "fp32" and chosen != network:
        raise VECError(f"{what} = {precision} applies to {chooser} = {network} only, not {chosen}; set it to fp32")


def emulated_on_this_cpu(precision: str, device: str | torch.device) -> bool:
    """True where `precision` has no oneDNN kernels on this CPU (bf16 without AVX-512, say), so that its
    convolutions fall back to generic loops: measured 24x slower than fp32 with oneDNN held to AVX2."""
    if precision == "fp32" or torch.device(device).type != "cpu":
        return False
    try:  # private ops of torch's oneDNN binding (torch 1.x to 2.14 at least): if gone, assume kernels exist
        supported = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported,
                     "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}[precision]()
    except (AttributeError, RuntimeError):
        return False
    return not supported


def warn_if_emulated(precision: str, device: str | torch.device, what: str = "precision") -> None:
    """One-line warning (results stay right, only slow) when `precision` would run emulated on this CPU."""
    if emulated_on_this_cpu(precision, device):
        warnings.warn(f"{what} = {precision}: this CPU has no oneDNN {precision} kernels, so it runs emulated, "
                      "many times slower than fp32; use fp32 here", VECWarning, stacklevel=2)


def autocast(precision: str, device: str | torch.device, cache_enabled: bool = True):
    """The context a network runs in: nothing for fp32 (bit-identical to no precision setting), else autocast.

    `cache_enabled=False` while capturing a CUDA graph: autocast's cache of cast weights must not
    outlive the capture.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision], cache_enabled=cache_enabled)
