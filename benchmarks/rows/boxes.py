"""Rows "cascade_rcnn" and "boxes": the box stage.

- cascade_rcnn: Cascade R-CNN R101-FPN frames/s at the paper's 1333x800 test scale,
  --det-batch frames per step, as CascadeRCNNDetector runs it (BGR uint8 in, float32 numpy
  out), in fp32 ("reference", the ratios' base) and each precision of --precisions
  (detector_precision); and "heads_per_frame", fp32 with the RPN head and the cascade stages
  called frame by frame instead of once per batch. It first prints how often the heads call
  their main operators either way.
- boxes: frames/s of the motion cue (motion_boxes with the dataset's settings of config.cfg,
  on a synthetic video whose blobs give about the reference's boxes per frame) and of
  Cascade R-CNN (fp32, frames resized to fit 1333x800 as the pipeline does) at each benchmark
  dataset's frame size.

Detector weights are det_fill stand-ins: speed does not depend on them.
"""
from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import torch

from benchmarks.harness import Result, interleaved
from benchmarks.networks import STAND_IN, usable_precisions, with_stand_in_weights
from benchmarks.synthetic import DATASETS, blob_frames
from models import CascadeRCNN
from models.cascade_rcnn import TEST_SCALE
from utils.foreground import CascadeRCNNDetector, motion_boxes

# operator → what the count means: kernel launches (convolution, linear, RoIAlign), host-device
# synchronisations on a GPU (nonzero: boolean selection; nms: its kept-mask copy)
HEAD_OPS = {"aten::convolution": "convolution", "aten::addmm": "linear", "torchvision::roi_align": "RoIAlign",
            "aten::nonzero": "nonzero", "torchvision::nms": "NMS"}
MOTION_FRAMES = 50  # frames per step of the motion cue (about 1-5 ms each on a CPU core)
SCORE_THR = 0.05  # CascadeRCNNDetector's default


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rows cascade_rcnn, boxes")
    group.add_argument("--det-batch", type=int, default=4, help="Cascade R-CNN: frames per step")


def op_calls(fn: Callable[[], object]) -> dict[str, int]:
    """How often each operator of HEAD_OPS runs in fn() (torch.profiler, CPU side)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        fn()
    names = [event.name for event in profile.events()]
    return {op: names.count(op) for op in HEAD_OPS}


def row_cascade_rcnn(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Cascade R-CNN frames/s at 1333x800 per precision, and with the heads called frame by frame."""
    width, height = TEST_SCALE
    print(f"Cascade R-CNN R101-FPN, batch {args.det_batch} frames of {width}x{height}, score_thr {SCORE_THR}, "
          f"on {device}; {STAND_IN}")
    model = with_stand_in_weights(CascadeRCNN(), device)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.det_batch)]

    def frame_by_frame(inputs, shapes, factors, feats) -> list:
        return [model.detect(inputs, shape, factor, SCORE_THR, feats=feats, batch_index=i)
                for i, (shape, factor) in enumerate(zip(shapes, factors))]

    @torch.inference_mode()
    def heads_per_frame() -> list:
        """fp32, the RPN head and the cascade stages called frame by frame (the detector before
        detect_batch): what batching the heads over the frames gains."""
        inputs, shapes, factors = model.preprocess_batch(frames)
        return frame_by_frame(inputs, shapes, factors, model.extract_feat(inputs))

    with torch.inference_mode():
        inputs, shapes, factors = model.preprocess_batch(frames)
        feats = model.extract_feat(inputs)
        per_frame = op_calls(lambda: frame_by_frame(inputs, shapes, factors, feats))
        batched = op_calls(lambda: model.detect_batch(inputs, shapes, factors, SCORE_THR, feats=feats))
        del inputs, feats
    print(f"  calls of the heads (RPN head to final NMS) per batch of {args.det_batch} frames, frame by frame -> "
          "batched: " + ", ".join(f"{label} {per_frame[op]} -> {batched[op]}" for op, label in HEAD_OPS.items()))
    steps = {}
    for name, precision in (("reference", "fp32"), *((p, p) for p in usable_precisions(args.precisions, device))):
        detector = CascadeRCNNDetector(model, str(device), batch_size=args.det_batch, precision=precision)
        steps[name] = lambda detector=detector: detector(frames)
    steps["heads_per_frame"] = heads_per_frame
    results = interleaved("cascade_rcnn", "frames/s", steps, args.det_batch, device, args.warmup, args.repeats)
    return results


def row_boxes(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Motion cue and Cascade R-CNN frames/s at each dataset's frame size."""
    print(f"box stage per dataset size: motion cue ({MOTION_FRAMES} frames per step, CPU) and Cascade R-CNN "
          f"(batch {args.det_batch}, fp32) on {device}; {STAND_IN}")
    detector = CascadeRCNNDetector(with_stand_in_weights(CascadeRCNN(), device), str(device),
                                   batch_size=args.det_batch)
    results = []
    for name, stats in DATASETS.items():
        frames = np.stack(list(blob_frames(name, MOTION_FRAMES + 2)))
        params = stats["box_params"]
        no_boxes = np.zeros((0, 4))

        def motion(frames=frames, params=params) -> None:
            for i in range(1, len(frames) - 1):
                motion_boxes(frames[i - 1:i + 2], no_boxes, params["area_thr"], params["binary_thr"],
                             params["extend"], params["blur_size"])

        batch = list(frames[:args.det_batch])
        height, width = stats["size"]
        scaled_h, scaled_w = CascadeRCNN.rescaled_size(height, width)
        results += interleaved("boxes", f"motion frames/s {height}x{width}", {"motion": motion}, MOTION_FRAMES,
                               device, args.warmup, args.repeats)
        results += interleaved("boxes", f"detector frames/s {height}x{width}",
                               {f"cascade_rcnn {scaled_w}x{scaled_h}": lambda batch=batch: detector(batch)},
                               args.det_batch, device, args.warmup, args.repeats)
    return results


ROWS = {"cascade_rcnn": row_cascade_rcnn, "boxes": row_boxes}
