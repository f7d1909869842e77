"""Rows "flownet2" and "flow_backends": the optical-flow stage.

- flownet2: FlowNet2 pairs/s at 512x384, --flow-batch pairs per step, as FlowNet2Flow.compute
  runs it (uint8 frames in, float32 numpy out), in fp32 ("reference", the ratios' base) and
  each precision of --precisions (flow_precision); then the correlation layer alone, at
  FlowNet2's 1/8 scale, for its share of a pair's time.
- flow_backends: frames/s of every flow backend (dis, farneback, FlowNet2, RAFT) on frames
  of each benchmark dataset's size (benchmarks/synthetic.py), --flow-batch pairs per step.
  Every backend computes at 512x384, so the size mostly changes the resizing.

Network weights are stand-ins (det_fill for FlowNet2, random for RAFT): speed does not
depend on them.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torchvision.models.optical_flow import raft_large

from benchmarks.harness import Result, interleaved
from benchmarks.networks import STAND_IN, usable_precisions, with_stand_in_weights
from benchmarks.synthetic import SIZES, blob_frames
from FlowNet2_src import FlowNet2
from FlowNet2_src.ops import Correlation
from utils.flow import OpenCVFlow
from utils.flow.flownet2 import FlowNet2Flow
from utils.flow.raft import RaftFlow


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rows flownet2, flow_backends")
    group.add_argument("--flow-batch", type=int, default=8, help="frame pairs per step")


def row_flownet2(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """FlowNet2 pairs/s per precision, and the correlation layer's share of a pair's time in fp32."""
    print(f"FlowNet2, batch {args.flow_batch} pairs of 512x384 frames, on {device}; {STAND_IN}")
    model = with_stand_in_weights(FlowNet2(), device)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (args.flow_batch, 384, 512, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=2)
    steps = {}
    for name, precision in (("reference", "fp32"), *((p, p) for p in usable_precisions(args.precisions, device))):
        backend = FlowNet2Flow(model, str(device), precision)
        steps[name] = lambda backend=backend: backend.compute(first, second)
    results = interleaved("flownet2", "pairs/s", steps, args.flow_batch, device, args.warmup, args.repeats)
    del steps
    # FlowNetC's correlation of two 256-channel feature maps at 1/8 of 512x384, max displacement 20, stride 2
    features = torch.rand(args.flow_batch, 256, 48, 64, device=device)
    correlation = Correlation(20, 1, 20, 1, 2, 1)
    with torch.inference_mode():
        results += interleaved("flownet2", "correlation pairs/s", {"fp32": lambda: correlation(features, features)},
                               args.flow_batch, device, args.warmup, args.repeats)
    pairs, corr = results[0].median, results[-1].median
    print(f"  fp32: {1 / pairs:.3f} s per pair, of which the correlation layer {1000 / corr:.1f} ms "
          f"({100 * pairs / corr:.0f} %)")
    return results


def row_flow_backends(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Frames/s of every flow backend at each dataset's frame size."""
    print(f"flow backends, batch {args.flow_batch} pairs, on {device} (DIS and Farneback: CPU); FlowNet2 with "
          f"{STAND_IN}; RAFT with random weights")
    torch.manual_seed(0)
    backends = {"dis": OpenCVFlow("dis"), "farneback": OpenCVFlow("farneback"),
                "flownet2": FlowNet2Flow(with_stand_in_weights(FlowNet2(), device), str(device)),
                "raft": RaftFlow(raft_large(weights=None, progress=False), str(device))}
    results = []
    for name, (height, width) in SIZES.items():
        frames = np.stack(list(blob_frames(name, args.flow_batch + 1)))
        first, second = frames[:-1], frames[1:]
        steps = {backend: lambda estimator=estimator: estimator(first, second)
                 for backend, estimator in backends.items()}
        results += interleaved("flow_backends", f"frames/s {height}x{width}", steps, args.flow_batch, device,
                               args.warmup, args.repeats)
    return results


ROWS = {"flownet2": row_flownet2, "flow_backends": row_flow_backends}
