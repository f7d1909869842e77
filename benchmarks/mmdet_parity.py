"""Compare `detector = mmdet` with `detector = cascade_rcnn` on real frames (needs MMDetection 3).

    python benchmarks/mmdet_parity.py --mmdet-config cascade-rcnn_r101_fpn_1x_coco.py \\
        --checkpoint obj_det_checkpoints/cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth FRAME [FRAME ...]

With mmdet installed (requirements-mmdet.txt), this checks the mmdet adapter and this
project's pure-PyTorch detector against each other: per frame, the number of detections
and the largest box and score differences. Prints one line per frame.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from utils.cascade_rcnn import CascadeRCNNDetector  # noqa: E402
from utils.datasets import read_image  # noqa: E402
from utils.errors import VECError  # noqa: E402
from utils.mmdet_detector import MMDetDetector  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmdet-config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("frames", nargs="+")
    args = parser.parse_args()
    try:
        ours = CascadeRCNNDetector(args.checkpoint, device=args.device, batch_size=1)
        theirs = MMDetDetector(args.mmdet_config, args.checkpoint, device=args.device)
        for path in args.frames:
            frame = read_image(Path(path))
            a, b = ours([frame])[0], theirs([frame])[0]
            if a.shape != b.shape:
                print(f"{path}: {len(a)} detections here, {len(b)} from mmdet")
                continue
            print(f"{path}: {len(a)} detections, max box difference {np.abs(a[:, :4] - b[:, :4]).max(initial=0):.4f} px, "
                  f"max score difference {np.abs(a[:, 4] - b[:, 4]).max(initial=0):.2e}")
    except VECError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
