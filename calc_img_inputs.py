"""Compute the optical flow of every frame of the configured dataset (docs/method.md §2).

Writes optical_flow/<dataset>/<same sub-path as the frame>/<frame>.npy; frames whose
flow file already exists are skipped, so an interrupted run resumes.
"""
import sys

from utils.cli import run_script
from utils.config import resolve_device
from utils.pipeline import compute_flow, open_dataset_split


def run(cfg, args):
    device = resolve_device(cfg.device)
    for split_name in ("train", "test") if args.split == "both" else (args.split,):
        split = open_dataset_split(cfg, split_name)
        written = compute_flow(cfg, split, device)
        print(f"{cfg.dataset_name} {split_name}: {len(split)} frames, {written} flow files written "
              f"({cfg.dataset.flow_method}) to {cfg.flow_dir}")


def add_arguments(parser):
    parser.add_argument("--split", choices=("train", "test", "both"), default="both")


def main(argv: list[str] | None = None) -> int:
    return run_script(__doc__.splitlines()[0], run, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
