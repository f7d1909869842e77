"""Row "cubes": the cube stage alone (load the box file + build_cubes), frames/s.

On frames, flow files and a box file on disk, for a UCSDped2-sized (360x240, grey as BGR,
.tif) and an Avenue-sized (640x360, BGR, .jpg) synthetic video (benchmarks/synthetic.py), with
boxes drawn from the reference's box statistics and the paper's cube settings. No variant is
a reference-equivalent path, so the row gives frames/s without ratios. Each timed repeat
writes a new store; the frames and flow files are written once, so after the first read they
come from the page cache, as in a second run of test.py.
"""
from __future__ import annotations

import argparse
import itertools
import shutil

import numpy as np
import torch

from benchmarks.harness import Result, interleaved, scratch_dir
from benchmarks.synthetic import CUBE_SPEC, DATASETS, PIPELINE_VIDEOS, sample_boxes, write_blob_video
from utils.cubes import build_cubes
from utils.flow.store import flow_file_path
from utils.foreground.box_files import load_box_file, save_box_file
from utils.infra.io import save_npy


def row_cubes(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Cube extraction frames/s: load the box file + build_cubes (reading frames and flow files)."""
    print(f"cube extraction (build_cubes, {args.e2e_frames} frames per video, the paper's cube settings; CPU work)")
    steps, cubes = {}, {}
    for name in PIPELINE_VIDEOS:
        root = scratch_dir(args.tmp_dir, f"vec_cubes_{name}_")
        split = write_blob_video(root / "frames", name, args.e2e_frames)
        rng = np.random.default_rng(1)
        height, width = DATASETS[name]["size"]
        for i in range(len(split)):  # flow files as compute_split_flow writes them (random vectors)
            save_npy(flow_file_path(root / "flow", split, i), rng.normal(0, 2, (height, width, 2)).astype(np.float32))
        box_file = root / "frames" / "bboxes_test_obj_det_with_motion.npy"
        save_box_file(box_file, sample_boxes(DATASETS[name], len(split), rng), {})

        def step(split=split, root=root, box_file=box_file, name=name, counter=itertools.count()) -> None:
            out = root / f"cubes_{next(counter)}"
            store = build_cubes(split, load_box_file(box_file, len(split)), root / "flow", out, CUBE_SPEC, progress=False)
            cubes[name] = len(store)
            del store
            shutil.rmtree(out)

        steps[name] = step
    results = interleaved("cubes", "frames/s", steps, args.e2e_frames, torch.device("cpu"), args.warmup,
                          args.repeats)
    for r in results:
        height, width = DATASETS[r.variant]["size"]
        per_frame = cubes[r.variant] / args.e2e_frames
        print(f"  {r.variant:<9} {width}x{height}: {per_frame:.1f} cubes per frame, median {r.median:.1f} frames/s, "
              f"{r.median * per_frame:.0f} cubes/s")
    return results


ROWS = {"cubes": row_cubes}
