"""Compare `detector = mmdet` with `detector = cascade_rcnn` on real frames (needs MMDetection 3).

    python -m benchmarks.mmdet_parity --mmdet-config cascade-rcnn_r101_fpn_1x_coco.py \\
        --checkpoint obj_det_checkpoints/cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth FRAME [FRAME ...]

With mmdet installed (requirements-mmdet.txt), this checks the mmdet adapter and this
project's pure-PyTorch detector against each other: per frame, the number of detections,
how many pair up one to one (support/box_matching.py: same boxes as sets, not by rank) and the
largest box and score differences of the pairs, and each detector's seconds per frame.
Prints one line per frame, then the mean times and their ratio (one run, same machine).
(`python benchmarks/mmdet_parity.py ...` runs the same.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/mmdet_parity.py`: import from the repository's root, as `-m` does
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.harness import timed  # noqa: E402
from support.box_matching import match_boxes  # noqa: E402
from utils.datasets import read_image  # noqa: E402
from utils.infra.errors import VECError  # noqa: E402
from utils.foreground import CascadeRCNNDetector, MMDetDetector  # noqa: E402

MATCH_IOU = 0.5


def detect_timed(detector, frame: np.ndarray, device: torch.device, seconds: list) -> np.ndarray:
    """The detector's boxes of one frame; its seconds appended to `seconds`."""
    detections = []
    seconds.append(timed(lambda: detections.append(detector([frame])[0]), device))
    return detections[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmdet-config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("frames", nargs="+")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    try:
        ours = CascadeRCNNDetector.from_checkpoint(args.checkpoint, device=args.device, batch_size=1)
        theirs = MMDetDetector.from_checkpoint(args.mmdet_config, args.checkpoint, device=args.device)
        seconds = {"ours": [], "mmdet": []}
        for path in args.frames:
            frame = read_image(Path(path))
            a = detect_timed(ours, frame, device, seconds["ours"])
            b = detect_timed(theirs, frame, device, seconds["mmdet"])
            m = match_boxes(a[:, :4], b[:, :4], a[:, 4], b[:, 4], min_iou=MATCH_IOU, score_atol=1.0)
            print(f"{path}: {len(a)} detections here, {len(b)} from mmdet, {len(m.actual)} paired "
                  f"(IoU >= {MATCH_IOU}); "
                  f"paired: max box difference {m.max_box_diff:.4f} px, max score difference {m.max_score_diff:.2e}; "
                  f"{seconds['ours'][-1]:.2f} s here, {seconds['mmdet'][-1]:.2f} s mmdet")
        mean_ours, mean_mmdet = np.mean(seconds["ours"]), np.mean(seconds["mmdet"])
        print(f"seconds per frame on {args.device}: {mean_ours:.2f} here, {mean_mmdet:.2f} mmdet "
              f"(mmdet / here = {mean_mmdet / mean_ours:.2f})")
    except VECError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
