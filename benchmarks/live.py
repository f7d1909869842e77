"""How fast `test.py --live` keeps up with a camera: a paced MJPEG camera on 127.0.0.1 and the live session on it.

    python benchmarks/live.py [--device cpu|cuda] [--nf 8 32] [--fps 25] [--seconds 20] [--clip VIDEO]

A clip (default: a test video of the built-in synthetic dataset, 240x160 with walkers and one
anomaly) is served by support/mjpeg_server.py as a camera at --fps frames per second for
--seconds; `utils.live.run_session` (what `test.py --live URL` runs) watches it over HTTP with
its reader thread, ring, stride and alarms, and each row reports, for one cloze network size nf:

- scored/s: frames scored per second; stride: the stride it settled on (1 = every frame);
- delay median / p95: from a frame's arrival to its score (it includes waiting for frame i+1);
- score ms: the median time to score one frame at that stride, of which flow ms per flow (five
  per frame at a stride of 5 or more, fewer below) and rest ms (boxes, cubes, cloze networks);
- dropped: frames given up (mostly in the first seconds, before the speed is known).

The pipeline is the one `--live` builds from config.cfg, with the stages of the device:

- cpu: DIS flow + motion boxes (the synthetic dataset's settings: flow_method = dis, detector = none);
- cuda: FlowNet2 + Cascade R-CNN + motion boxes (the paper's), with det_fill stand-in weights
  (support/stand_in_weights.py; no checkpoint is needed), so speed only.

The cloze networks have random weights and made-up training statistics: the time to score a
frame does not depend on them (the number of boxes does, and comes from the clip). Runs on a
busy machine measure that machine: the load average is printed with the figures.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

from support.mjpeg_server import PacedMJPEGServer, encode_jpegs  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.datasets import generate_synthetic  # noqa: E402
from utils.infra.errors import VECError  # noqa: E402
from utils.live import run_session  # noqa: E402
from utils.live.scorer import FrameScorer, live_threads  # noqa: E402
from utils.live.source import open_capture, parse_source  # noqa: E402
from utils.live.status import Terminal  # noqa: E402
from utils.trained_model import TrainedBlocks, make_network  # noqa: E402
from utils.infra.video_frames import read_video_frames  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STAGES = {"cpu": "DIS flow + motion boxes", "cuda": "FlowNet2 + Cascade R-CNN + motion boxes, stand-in weights"}


def clip_frames(path: str | None, work: Path) -> list[np.ndarray]:
    if path is None:
        root = generate_synthetic(work / "synthetic", seed=0, n_train=0, n_test=1, n_frames=120, progress=False)
        return [cv2.imread(str(p)) for p in sorted((root / "Test" / "Test001").glob("*.tif"))]
    try:
        frames = read_video_frames(path)
    except VECError as err:
        sys.exit(f"error: {err}")
    if not frames:
        sys.exit(f"error: {path} gives no frame")
    return frames


def stand_in_model(cfg) -> TrainedBlocks:
    """A cloze network of the configured nf with random weights, and training statistics of the right kind."""
    rng = np.random.default_rng(0)
    state = make_network(cfg.cloze).state_dict()
    return TrainedBlocks([[state]], [[rng.uniform(50, 150, 200)]], [[rng.uniform(5, 15, 200)]])


def scorer_for(device: str, nf: int):
    overrides = [f"shared_parameters.device={device}", "shared_parameters.dataset_name=synthetic", f"synthetic.nf={nf}"]
    if device == "cpu":
        cfg = load_config(REPO / "config.cfg", overrides)
        return cfg, FrameScorer.from_config(cfg, stand_in_model(cfg), device)
    from FlowNet2_src import FlowNet2
    from models.cascade_rcnn import CascadeRCNN
    from support.stand_in_weights import det_fill
    from utils.flow.flownet2 import FlowNet2Flow
    from utils.foreground import CascadeRCNNDetector

    cfg = load_config(REPO / "config.cfg", overrides + ["synthetic.flow_method=flownet2", "synthetic.detector=cascade_rcnn"])
    flownet2, cascade = FlowNet2(), CascadeRCNN()
    flownet2.load_state_dict(det_fill(flownet2.state_dict()))
    cascade.load_state_dict(det_fill(cascade.state_dict()))
    return cfg, FrameScorer(cfg, stand_in_model(cfg), device, FlowNet2Flow(flownet2, device),
                            CascadeRCNNDetector(cascade, device, batch_size=1))


def run_row(device: str, nf: int, jpegs: list[bytes], fps: float, work: Path, show: bool) -> dict:
    with live_threads(device):  # as test.py --live runs
        cfg, scorer = scorer_for(device, nf)
        scorer.warm_up()
        return serve_and_watch(scorer, device, nf, jpegs, fps, work, show)


def serve_and_watch(scorer, device: str, nf: int, jpegs: list[bytes], fps: float, work: Path, show: bool) -> dict:
    terminal = Terminal(out=sys.stdout if show else io.StringIO(), show_status=False)
    with PacedMJPEGServer(jpegs, fps) as server:
        source = parse_source(server.url)
        capture = open_capture(source)
        if capture is None:
            sys.exit(f"error: cannot open {server.url}")
        return run_session(scorer, source, capture, work / f"{device}_nf{nf}", {"benchmark": True}, threshold=None,
                           min_gap=2.0, retries=0, terminal=terminal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--nf", type=int, nargs="+", default=[8, 32], help="cloze network widths, one row each")
    parser.add_argument("--fps", type=float, default=25.0, help="the camera's frame rate")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the camera runs per row")
    parser.add_argument("--clip", help="a video file to serve (looped); default: a synthetic test video")
    parser.add_argument("--quiet", action="store_true", help="leave out the session's own lines (stride changes)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but no CUDA device is available here")
    with tempfile.TemporaryDirectory(prefix="vec-live-bench-") as tmp:
        work = Path(tmp)
        frames = clip_frames(args.clip, work)
        clip = encode_jpegs(frames)
        jpegs = [clip[i % len(clip)] for i in range(int(round(args.fps * args.seconds)))]
        height, width = frames[0].shape[:2]
        print(f"live scoring on {args.device} ({STAGES[args.device]}): a {width}x{height} clip served at "
              f"{args.fps:g} frames/s for {args.seconds:g} s per row; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the start")
        rows = []
        for nf in args.nf:
            summary = run_row(args.device, nf, jpegs, args.fps, work, not args.quiet)
            rows.append((nf, summary))
        print(f"\n{'nf':>4} {'scored/s':>9} {'stride':>7} {'delay median':>13} {'delay p95':>10} {'score ms':>9} "
              f"{'flow ms':>8} {'rest ms':>8} {'scored':>7} {'dropped':>8}")
        for nf, s in rows:
            print(f"{nf:>4} {s['scored_per_second']:>9.2f} {s['stride']:>7} {s['delay_median_s'] * 1000:>10.0f} ms "
                  f"{s['delay_p95_s'] * 1000:>7.0f} ms {s['score_seconds_median'] * 1000:>9.0f} "
                  f"{s['flow_seconds_median'] * 1000:>8.0f} {s['rest_seconds_median'] * 1000:>8.0f} {s['scored']:>7} "
                  f"{s['dropped']:>8}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
