"""Compare `detector = mmdet` with `detector = cascade_rcnn` on real frames (needs MMDetection 3).

    python benchmarks/mmdet_parity.py --mmdet-config cascade-rcnn_r101_fpn_1x_coco.py \\
        --checkpoint obj_det_checkpoints/cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth FRAME [FRAME ...]

With mmdet installed (requirements-mmdet.txt), this checks the mmdet adapter and this
project's pure-PyTorch detector against each other: per frame, the number of detections
and the largest box and score differences, and each detector's seconds per frame.
Prints one line per frame, then the mean times and their ratio (one run, same machine).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from utils.foreground import CascadeRCNNDetector, MMDetDetector  # noqa: E402
from utils.datasets import read_image  # noqa: E402
from utils.errors import VECError  # noqa: E402


def timed(detector, frame, seconds: list) -> np.ndarray:
    started = time.perf_counter()
    detections = detector([frame])[0]
    seconds.append(time.perf_counter() - started)
    return detections


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmdet-config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("frames", nargs="+")
    args = parser.parse_args()
    try:
        ours = CascadeRCNNDetector.from_checkpoint(args.checkpoint, device=args.device, batch_size=1)
        theirs = MMDetDetector.from_checkpoint(args.mmdet_config, args.checkpoint, device=args.device)
        seconds = {"ours": [], "mmdet": []}
        for path in args.frames:
            frame = read_image(Path(path))
            a, b = timed(ours, frame, seconds["ours"]), timed(theirs, frame, seconds["mmdet"])
            if a.shape != b.shape:
                print(f"{path}: {len(a)} detections here, {len(b)} from mmdet")
                continue
            print(f"{path}: {len(a)} detections, max box difference {np.abs(a[:, :4] - b[:, :4]).max(initial=0):.4f} px, "
                  f"max score difference {np.abs(a[:, 4] - b[:, 4]).max(initial=0):.2e}; "
                  f"{seconds['ours'][-1]:.2f} s here, {seconds['mmdet'][-1]:.2f} s mmdet")
        mean_ours, mean_mmdet = np.mean(seconds["ours"]), np.mean(seconds["mmdet"])
        print(f"seconds per frame on {args.device}: {mean_ours:.2f} here, {mean_mmdet:.2f} mmdet "
              f"(mmdet / here = {mean_mmdet / mean_ours:.2f})")
    except VECError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
