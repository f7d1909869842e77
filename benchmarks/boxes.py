"""Speed of the box stage on this machine.

    python benchmarks/boxes.py [--device cuda] [--frames 2]

Frames/s of the motion cue (blur, differences, contours) and of Cascade R-CNN R101-FPN
(frames resized to fit 1333x800 as in the paper's pipeline) at the benchmark datasets'
frame sizes. Detector weights are deterministic stand-ins: speed does not depend on them.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from models import CascadeRCNN  # noqa: E402
from utils.foreground import CascadeRCNNDetector  # noqa: E402
from utils.foreground import motion_boxes  # noqa: E402

SIZES = {"UCSDped2": (240, 360), "avenue": (360, 640), "ShanghaiTech": (480, 856)}


def moving_frames(height, width, count, seed=0):
    """Textured frames with a few moving blocks, so the motion cue has contours to find."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 200, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count + 2, axis=0)
    for t in range(count + 2):
        for k in range(5):
            y, x = 20 + 40 * k % (height - 60), (10 + 3 * t + 70 * k) % (width - 40)
            frames[t, y:y + 40, x:x + 20] = 30
    return frames


def bench_motion(height, width, repeats=50):
    frames = moving_frames(height, width, 1)
    started = time.perf_counter()
    for _ in range(repeats):
        motion_boxes(frames, np.zeros((0, 4)), 100, 18, 2, 5)
    return repeats / (time.perf_counter() - started)


def bench_detector(detector, height, width, frames):
    batch = list(moving_frames(height, width, frames)[:frames])
    detector(batch[:1])  # warm-up
    started = time.perf_counter()
    detector(batch)
    return frames / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=2, help="frames per detector timing (one batch)")
    args = parser.parse_args()
    torch.manual_seed(0)
    detector = CascadeRCNNDetector(CascadeRCNN(), args.device, batch_size=args.frames)
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}")
    print(f"{'dataset':<14}{'frame':>10}{'detector input':>16}{'motion cue':>16}{'Cascade R-CNN':>18}")
    for name, (h, w) in SIZES.items():
        new_h, new_w = CascadeRCNN.rescaled_size(h, w)
        print(f"{name:<14}{f'{h}x{w}':>10}{f'{new_h}x{new_w}':>16}{bench_motion(h, w):>11.0f} fr/s"
              f"{bench_detector(detector, h, w, args.frames):>13.2f} fr/s")


if __name__ == "__main__":
    main()
