"""Row "end_to_end": test time from frames on disk to frame scores, with the pipeline's own functions.

compute_split_flow → split_boxes (obj_det_with_motion) → build_cubes → score_cubes →
frame_scores on a UCSDped2-sized and an Avenue-sized synthetic video (benchmarks/synthetic.py),
with a randomly initialised cloze network and made-up training statistics: the scores mean
nothing, the work (every cube through the network) is the real one. Variants: DIS flow with
motion boxes everywhere; on CUDA also FlowNet2, and FlowNet2 with Cascade R-CNN (random
weights). Frames/s and the median seconds of each stage; no ratios (no reference-equivalent
variant). Each repeat starts from empty output folders; the frames are written once.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time

import numpy as np
import torch

from benchmarks.harness import Result, scratch_dir, synchronize
from benchmarks.synthetic import CUBE_SPEC, DATASETS, PIPELINE_VIDEOS, write_blob_video
from FlowNet2_src import FlowNet2
from models import CascadeRCNN
from utils.config import BoxParams, ClozeConfig
from utils.cubes import build_cubes
from utils.flow import OpenCVFlow, compute_split_flow
from utils.flow.flownet2 import FlowNet2Flow
from utils.foreground import CascadeRCNNDetector, split_boxes
from utils.scoring import frame_scores, score_cubes
from utils.trained_model import TrainedBlocks, make_network


def variants(device: torch.device) -> list[tuple[str, str]]:
    """(flow method, detector): dis + motion boxes everywhere; on CUDA also FlowNet2 and Cascade R-CNN."""
    chosen = [("dis", "none")]
    if device.type == "cuda":
        chosen += [("flownet2", "none"), ("flownet2", "cascade_rcnn")]
    return chosen


def flow_and_detector(flow: str, detector: str, device: torch.device):
    """The flow backend and detector, networks with random weights (seed 0): no checkpoint needed."""
    torch.manual_seed(0)
    backend = OpenCVFlow("dis") if flow == "dis" else FlowNet2Flow(FlowNet2(), device=str(device))
    if detector == "none":
        return backend, None
    return backend, CascadeRCNNDetector(CascadeRCNN(), device=str(device), batch_size=4)


def row_end_to_end(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Test-time frames/s from frames on disk to frame scores, stage by stage."""
    cloze = ClozeConfig(nf=args.nf)
    torch.manual_seed(0)
    state = {k: v.detach().cpu() for k, v in make_network(cloze).state_dict().items()}
    trained = TrainedBlocks([[state]], [[np.array([100.0, 200.0, 300.0])]], [[np.array([10.0, 20.0, 30.0])]])
    print(f"end to end, test time: frames on disk -> flow -> boxes (obj_det_with_motion) -> cubes -> frame scores, "
          f"{args.e2e_frames} frames per video, cloze network nf {args.nf} with random weights (speed only, "
          f"no AUROC) on {device}"
          + ("; FlowNet2 and Cascade R-CNN with random weights" if device.type == "cuda" else ""))
    results = []
    for flow_method, detector_name in variants(device):
        backend, detector = flow_and_detector(flow_method, detector_name, device)
        variant = ("fn2" if flow_method == "flownet2" else flow_method) + "+" + (
            "crcnn" if detector_name == "cascade_rcnn" else detector_name)
        for name in PIPELINE_VIDEOS:
            stats = DATASETS[name]
            root = scratch_dir(args.tmp_dir, f"vec_e2e_{name}_")
            split = write_blob_video(root / "frames", name, args.e2e_frames)
            params = BoxParams(**stats["box_params"])
            stages, counts, peaks = [], [], []

            def run_once(k: int) -> float:
                """Seconds for the whole run; each stage's seconds appended to `stages`."""
                work = root / f"run_{k}"
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                times, started = {}, time.perf_counter()
                compute_split_flow(split, backend, work / "flow", batch_size=8, progress=False)
                synchronize(device)
                times["flow"] = time.perf_counter() - started
                mark = time.perf_counter()
                boxes = split_boxes(split, "obj_det_with_motion", params, reuse_saved=False,
                                    detector_factory=lambda: detector, batch_size=4, progress=False)
                synchronize(device)
                times["boxes"] = time.perf_counter() - mark
                mark = time.perf_counter()
                store = build_cubes(split, boxes, work / "flow", work / "cubes", CUBE_SPEC, progress=False)
                times["cubes"] = time.perf_counter() - mark
                mark = time.perf_counter()
                cube_scores = score_cubes(store, trained, cloze, str(device), progress=False)
                frame_scores(len(split), stats["size"], store.frame_index, store.boxes, cube_scores)
                synchronize(device)
                times["scores"] = time.perf_counter() - mark
                total = time.perf_counter() - started
                counts.append((sum(len(b) for b in boxes), len(store)))
                if device.type == "cuda":
                    peaks.append(torch.cuda.max_memory_allocated(device))
                del store
                shutil.rmtree(work)
                stages.append(times)
                return total

            for k in range(args.warmup):
                run_once(-1 - k)
            stages.clear()
            result = Result("e2e", f"{'ped2' if name == 'UCSDped2' else name} frames/s", variant)
            for k in range(args.repeats):
                result.rates.append(len(split) / run_once(k))
            result.peak_bytes = max(peaks) if peaks else None
            results.append(result)
            boxes_n, cubes_n = counts[-1]
            stage_text = ", ".join(f"{key} {statistics.median(s[key] for s in stages):.2f} s" for key in stages[0])
            peak = f", peak GPU memory {result.peak_bytes / 2 ** 20:.0f} MiB" if result.peak_bytes is not None else ""
            print(f"  {variant:<10} {name:<9} {boxes_n / len(split):.1f} boxes and {cubes_n / len(split):.1f} cubes "
                  f"per frame; median {stage_text}; {result.median:.1f} frames/s{peak}")
        del backend, detector
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


ROWS = {"end_to_end": row_end_to_end}
