"""Optical flow (stage 1): backends under one convention, and the per-frame flow files.

    base.py       FlowBackend: resize to 512x384 → compute → resize back (vectors unscaled)
    opencv.py     dis, farneback          flownet2.py   FlowNet2 (the paper's)
    raft.py       torchvision's RAFT      store.py      flow files of a split, resumable
"""
from __future__ import annotations

from pathlib import Path

from utils.infra.errors import VECError
from utils.flow.base import FLOW_SIZE, FlowBackend
from utils.flow.opencv import OpenCVFlow
from utils.flow.store import compute_split_flow, flow_file_path, flow_pair, read_flow
from utils.flow.visualize import flow_to_image
from utils.infra.precision import check_precision_applies

__all__ = ["FLOW_SIZE", "FlowBackend", "OpenCVFlow", "build_flow_backend", "compute_split_flow", "flow_file_path",
           "flow_pair", "read_flow", "flow_to_image"]


def build_flow_backend(method: str, *, device: str = "cpu", flownet2_checkpoint: Path | None = None,
                       raft_weights: Path | None = None, precision: str = "fp32") -> FlowBackend:
    """The backend named by `flow_method` in config.cfg (networks are imported only when asked for).

    `precision` (flow_precision) applies to flownet2 only; another method with fp16 / bf16 is an error."""
    check_precision_applies(precision, "flow_precision", "flow_method", method, "flownet2")
    if method in ("dis", "farneback"):
        return OpenCVFlow(method)
    if method == "flownet2":
        from utils.flow.flownet2 import FlowNet2Flow

        return FlowNet2Flow.from_checkpoint(flownet2_checkpoint, device=device, precision=precision)
    if method == "raft":
        from utils.flow.raft import RaftFlow

        return RaftFlow.from_checkpoint(raft_weights, device=device)
    raise VECError(f"flow_method = {method} is unknown; use flownet2, dis, farneback or raft")
