"""Speed of the pipeline's stages, each fast path against the reference-equivalent path, in ONE run.

    python -m benchmarks.speed [--device cpu|cuda] [--rows ROW ...] [--repeats 5] [--warmup N] [--steps N]
                               [row options: see --help]
    (python benchmarks/speed.py ... runs the same)

Rows, one module per family in benchmarks/rows/ (each module's docstring says what it measures):

    cloze                  training and scoring steps of the cloze networks (rows/cloze.py)
    flownet2, flow_backends   FlowNet2 per precision; every flow backend per dataset size (rows/flow.py)
    cascade_rcnn, boxes    Cascade R-CNN per precision; motion cue and detector per dataset size (rows/boxes.py)
    cubes                  cube extraction (rows/cubes.py)
    end_to_end             test time, frames on disk to frame scores (rows/end_to_end.py)
    memory                 training's peak RSS on a ShanghaiTech-sized cube store (rows/memory.py)

Every row times its variants with benchmarks/harness.py: after --warmup untimed steps, the
variants run interleaved --repeats times; the table gives each one's median rate and its ratio
to the row's base ("reference"): the median over repeats of the ratio within a repeat. On
CUDA, timings are synchronised and the peak GPU memory of each variant is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/speed.py`: import from the repository's root, as `-m` does
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch  # noqa: E402

from benchmarks.harness import print_table  # noqa: E402
from benchmarks.rows import boxes, cloze, cubes, end_to_end, flow, memory  # noqa: E402

FAMILIES = (cloze, flow, boxes, cubes, end_to_end, memory)
ROWS = {name: row for family in FAMILIES for name, row in family.ROWS.items()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=["cloze"])
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default: cpu 1, cuda 5)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per timed repeat of the cloze row (default: cpu 1, cuda 50)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: the machine's)")
    p.add_argument("--tmp-dir", default=None, help="where the rows' temporary files go (default: the system's)")
    shared = p.add_argument_group("options of several rows")
    shared.add_argument("--nf", type=int, default=32, help="cloze networks' features_root (cloze, end_to_end, memory)")
    shared.add_argument("--batch", type=int, default=128, help="training batch in cubes (cloze, memory)")
    shared.add_argument("--precisions", nargs="+", choices=("fp16", "bf16"), default=["fp16", "bf16"],
                        help="reduced precisions timed beside fp32 ('reference') (flownet2, cascade_rcnn)")
    shared.add_argument("--e2e-frames", type=int, default=120,
                        help="frames of each synthetic video (cubes, end_to_end)")
    for family in FAMILIES:
        if hasattr(family, "add_options"):
            family.add_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    args.steps = args.steps if args.steps is not None else (50 if on_gpu else 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if on_gpu else ""))
    results = []
    for row in args.rows:
        results += ROWS[row](args, device)
        if on_gpu:  # the row's tensors are freed: hand their cached blocks back
            torch.cuda.empty_cache()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
