"""Speed of each optical-flow backend on this machine.

    python benchmarks/flow.py [--device cuda] [--pairs 4]

Frames/s of dis, farneback, FlowNet2 and RAFT at the benchmark datasets' frame sizes
(every backend computes at 512x384, so the size mostly changes the resizing), FlowNet2's
seconds per 512x384 pair, and the share of its forward pass spent in the correlation layer.
Weights are deterministic stand-ins (no files needed): speed does not depend on them.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.optical_flow import raft_large

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from FlowNet2_src import FlowNet2  # noqa: E402
from FlowNet2_src.ops import Correlation  # noqa: E402
from utils.flow import build_flow_backend  # noqa: E402
from utils.flow.flownet2 import FlowNet2Flow  # noqa: E402
from utils.flow.raft import RaftFlow  # noqa: E402

SIZES = {"UCSDped2": (240, 360), "avenue": (360, 640), "ShanghaiTech": (480, 856)}


def frames_per_second(estimator, height, width, pairs, batch):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (batch, height, width, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=2)
    estimator(first[:1], second[:1])  # warm-up
    started = time.perf_counter()
    for _ in range(max(1, pairs // batch)):
        estimator(first, second)
    return max(1, pairs // batch) * batch / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=4, help="frame pairs timed per backend and size")
    args = parser.parse_args()
    torch.manual_seed(0)
    flownet2 = FlowNet2Flow(FlowNet2(), args.device)
    scratch = tempfile.TemporaryDirectory()  # removed at exit
    raft_weights = Path(scratch.name) / "raft_large_random.pth"  # timing only: random weights
    torch.save(raft_large(weights=None).state_dict(), raft_weights)
    backends = {"dis": (build_flow_backend("dis"), 1), "farneback": (build_flow_backend("farneback"), 1),
                "flownet2": (flownet2, args.pairs),
                "raft": (RaftFlow.from_checkpoint(raft_weights, args.device), args.pairs)}
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}")
    print(f"{'backend':<11}" + "".join(f"{name + ' ' + str(h) + 'x' + str(w):>24}" for name, (h, w) in SIZES.items()))
    for name, (estimator, batch) in backends.items():
        pairs = args.pairs if name in ("flownet2", "raft") else 4 * args.pairs
        row = [frames_per_second(estimator, h, w, pairs, batch) for h, w in SIZES.values()]
        print(f"{name:<11}" + "".join(f"{fps:>19.2f} fr/s" for fps in row))

    inputs = torch.rand(1, 3, 2, 384, 512, device=args.device) * 255
    model = flownet2.model
    with torch.inference_mode():
        model(inputs)
        started = time.perf_counter()
        model(inputs)
        per_pair = time.perf_counter() - started
        features = torch.rand(1, 256, 48, 64, device=args.device)
        correlation = Correlation(20, 1, 20, 1, 2, 1)
        correlation(features, features)
        started = time.perf_counter()
        correlation(features, features)
        corr_seconds = time.perf_counter() - started
    print(f"FlowNet2: {per_pair:.2f} s per 512x384 pair ({1 / per_pair:.2f} pairs/s); "
          f"correlation layer {corr_seconds * 1000:.0f} ms ({100 * corr_seconds / per_pair:.0f}% of the forward pass)")


if __name__ == "__main__":
    main()
