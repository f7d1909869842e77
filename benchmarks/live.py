"""How fast `test.py --live` keeps up with a camera: a paced MJPEG camera on 127.0.0.1 and the live session on it.

    python benchmarks/live.py [--device cpu|cuda] [--nf 8 32] [--fps 25] [--seconds 20] [--clip VIDEO|street]
                              [--video-nf 32] [--precision fp32 bf16]

A clip (default: a test video of the built-in synthetic dataset, 240x160 with walkers and one
anomaly; `street`: OpenCV's 768x576 street sample vtest.avi, fetched once by
benchmarks/street_clip.py) is served by support/mjpeg_server.py as a camera at --fps frames per second for
--seconds; `utils.live.run_session` (what `test.py --live URL` runs) watches it over HTTP with
its reader thread, ring, stride and alarms, and each row reports, for one cloze network size nf:

- scored/s: frames scored per second; stride: the stride it settled on (1 = every frame);
- delay median / p95: from a frame's arrival to its score (it includes waiting for frame i+1);
- score ms: the median time to score one frame at that stride, of which flow ms per flow (five
  per frame at a stride of 5 or more, fewer below) and rest ms (boxes, cubes, cloze networks);
- dropped: frames given up, and of those after the stream's first second (before it the speed is
  not known yet);
- per stage, the median ms per scored frame: decode (each JPEG, on the reader thread), flow (per
  flow), boxes, cubes (these three on the preparing thread), networks (on the scoring thread),
  and waiting (the scoring thread idle, waiting for a prepared frame).

With --video-nf, the clip (its first --video-frames frames) is also scored whole as `test.py --video` does (utils.own_video:
frames extracted, flow, boxes, cubes, batched scoring) and `--calibrate`'s path
(`score_every_frame`), and their frames/s are printed beside the live rows.

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
import contextlib
import io
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

from models.stacked_cloze import Sequential  # noqa: E402
from support.mjpeg_server import PacedMJPEGServer, encode_jpegs  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.datasets import generate_synthetic  # noqa: E402
from utils.flow import OpenCVFlow  # noqa: E402
from utils.infra.errors import VECError  # noqa: E402
from utils.infra.video_frames import read_video_frames  # noqa: E402
from utils.live import run_session  # noqa: E402
from utils.live.scorer import FrameScorer, live_threads  # noqa: E402
from utils.live.source import open_capture, parse_source  # noqa: E402
from utils.live.status import Terminal  # noqa: E402
from utils.trained_model import TrainedBlocks, make_network  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STAGES = {"cpu": "DIS flow + motion boxes", "cuda": "FlowNet2 + Cascade R-CNN + motion boxes, stand-in weights"}
STAGE_NAMES = ("decode", "flow", "boxes", "cubes", "networks", "waiting")


def clip_path(clip: str | None) -> str | None:
    """The clip's file: `street` is OpenCV's sample (fetched once), None the synthetic test video."""
    if clip != "street":
        return clip
    from benchmarks.street_clip import street_clip

    try:
        return str(street_clip())
    except VECError as err:
        sys.exit(f"error: {err}")


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


def config_for(device: str, nf: int, precision: str = "fp32", folders: Path | None = None):
    overrides = [f"shared_parameters.device={device}", "shared_parameters.dataset_name=synthetic", f"synthetic.nf={nf}",
                 f"synthetic.precision={precision}"]
    if folders is not None:  # everything a run writes, in a scratch folder
        overrides += [f"shared_parameters.{key}={folders / key}" for key in
                      ("raw_dataset_dir", "data_root_dir", "optical_flow_dir", "results_dir")]
    return load_config(REPO / "config.cfg", overrides)


class Variant:
    """How a row runs: `overlapped` (what test.py --live does) or `serial`, the way before frames were
    overlapped (each frame prepared, then its networks, one U-Net after another; OpenCV with its own
    threads; offline flow one pair at a time), so both are measured in one run."""

    def __init__(self, name: str) -> None:
        self.name, self.overlap = name, name == "overlapped"

    @contextlib.contextmanager
    def threads(self, device: str):
        OpenCVFlow.WORKERS = None if self.overlap else 1
        try:
            with live_threads(device, opencv_threads=1 if self.overlap else None):
                yield
        finally:
            OpenCVFlow.WORKERS = None

    def execution(self):
        return None if self.overlap else Sequential()


def scorer_for(device: str, nf: int, precision: str = "fp32", variant: Variant = Variant("overlapped")):
    cfg = config_for(device, nf, precision)
    if device == "cpu":
        return cfg, FrameScorer.from_config(cfg, stand_in_model(cfg), device, execution=variant.execution())
    from FlowNet2_src import FlowNet2
    from models.cascade_rcnn import CascadeRCNN
    from support.stand_in_weights import det_fill
    from utils.flow.flownet2 import FlowNet2Flow
    from utils.foreground import CascadeRCNNDetector

    cfg = replace(cfg, dataset=replace(cfg.dataset, flow_method="flownet2", detector="cascade_rcnn"))
    flownet2, cascade = FlowNet2(), CascadeRCNN()
    flownet2.load_state_dict(det_fill(flownet2.state_dict()))
    cascade.load_state_dict(det_fill(cascade.state_dict()))
    return cfg, FrameScorer(cfg, stand_in_model(cfg), device, FlowNet2Flow(flownet2, device),
                            CascadeRCNNDetector(cascade, device, batch_size=1))


def run_row(device: str, nf: int, precision: str, variant: Variant, jpegs: list[bytes], fps: float, work: Path,
            show: bool) -> dict:
    with variant.threads(device):  # as test.py --live runs (overlapped)
        cfg, scorer = scorer_for(device, nf, precision, variant)
        scorer.warm_up()
        return serve_and_watch(scorer, device, nf, jpegs, fps, work, show, variant.overlap)


def serve_and_watch(scorer, device: str, nf: int, jpegs: list[bytes], fps: float, work: Path, show: bool,
                    overlap: bool = True) -> dict:
    terminal = Terminal(out=sys.stdout if show else io.StringIO(), show_status=False)
    with PacedMJPEGServer(jpegs, fps) as server:
        source = parse_source(server.url)
        capture = open_capture(source)
        if capture is None:
            sys.exit(f"error: cannot open {server.url}")
        return run_session(scorer, source, capture, work / f"{device}_nf{nf}_{len(os.listdir(work))}",
                           {"benchmark": True}, threshold=None, min_gap=2.0, retries=0, terminal=terminal,
                           overlap=overlap)


def write_clip(frames: list[np.ndarray], path: Path) -> Path:
    """`frames` as an MJPG video file (what --video and --calibrate read)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def whole_clip_rows(device: str, nf: int, precision: str, variant: Variant, clip: str, frames: list[np.ndarray],
                    work: Path) -> dict:
    """Frames/s of the clip scored whole: as `test.py --video CLIP` does, and as `--calibrate` does."""
    import time

    from utils.live.calibrate import score_every_frame
    from utils.own_video import score_videos
    from utils.trained_model import save_trained

    folders = work / f"video_nf{nf}_{precision}_{variant.name}"
    cfg = config_for(device, nf, precision, folders)
    trained = stand_in_model(cfg)
    save_trained(trained, folders / "model", "synthetic", cfg.foreground_extraction_mode, cfg.method,
                 scene_level=False)
    started = time.perf_counter()
    OpenCVFlow.WORKERS = None if variant.overlap else 1
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            score_videos(cfg, [Path(clip)], folders / "model", None, None, False)
    finally:
        OpenCVFlow.WORKERS = None
    video = len(frames) / (time.perf_counter() - started)
    with variant.threads(device):
        scorer = FrameScorer.from_config(cfg, trained, device, execution=variant.execution())
        scorer.warm_up()
        started = time.perf_counter()
        score_every_frame(scorer, iter(frames), "clip", progress=False, overlap=variant.overlap)
        calibrate = len(frames) / (time.perf_counter() - started)
    return {"video": video, "calibrate": calibrate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--nf", type=int, nargs="+", default=[8, 32], help="cloze network widths, one row each")
    parser.add_argument("--fps", type=float, default=25.0, help="the camera's frame rate")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the camera runs per row")
    parser.add_argument("--clip", help="a video file to serve (looped), or `street` (OpenCV's vtest.avi, fetched once); "
                                       "default: a synthetic test video")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="the cloze networks' precision, one row each (bf16: fast on CPUs with AMX)")
    parser.add_argument("--video-frames", type=int, default=200,
                        help="with --video-nf: score the clip's first N frames whole (default 200)")
    parser.add_argument("--compare", action="store_true",
                        help="run each row also the serial way (as before frames were overlapped), in turn")
    parser.add_argument("--video-nf", type=int, nargs="*", default=[],
                        help="also score the whole clip as test.py --video and --calibrate do, at these nf")
    parser.add_argument("--quiet", action="store_true", help="leave out the session's own lines (stride changes)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but no CUDA device is available here")
    with tempfile.TemporaryDirectory(prefix="vec-live-bench-") as tmp:
        work = Path(tmp)
        clip = clip_path(args.clip)
        frames = clip_frames(clip, work)
        encoded = encode_jpegs(frames)
        jpegs = [encoded[i % len(encoded)] for i in range(int(round(args.fps * args.seconds)))]
        height, width = frames[0].shape[:2]
        print(f"live scoring on {args.device} ({STAGES[args.device]}): a {width}x{height} clip served at "
              f"{args.fps:g} frames/s for {args.seconds:g} s per row; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the start")
        variants = [Variant("serial"), Variant("overlapped")] if args.compare else [Variant("overlapped")]
        rows = [(nf, precision, variant, run_row(args.device, nf, precision, variant, jpegs, args.fps, work,
                                                 not args.quiet))
                for precision in args.precision for nf in args.nf for variant in variants]
        print(f"\n{'nf':>4} {'prec':>5} {'variant':>10} {'scored/s':>9} {'stride':>7} {'delay median':>13} {'delay p95':>10} "
              f"{'scored':>7} {'dropped (>1 s)':>14}   median ms per scored frame: "
              + " ".join(f"{stage:>8}" for stage in STAGE_NAMES))
        for nf, precision, variant, s in rows:
            stages = s["stage_seconds_median"]
            print(f"{nf:>4} {precision:>5} {variant.name:>10} {s['scored_per_second']:>9.2f} {s['stride']:>7} "
                  f"{s['delay_median_s'] * 1000:>10.0f} ms {s['delay_p95_s'] * 1000:>7.0f} ms {s['scored']:>7} "
                  f"{s['dropped']:>6} ({s['dropped_after_first_second']:>4})   {'':>26}" + " ".join(f"{stages[stage] * 1000:>8.1f}" for stage in STAGE_NAMES))
        if args.video_nf:
            if clip is None:
                sys.exit("error: --video-nf needs a --clip file (the whole clip is scored)")
            frames = frames[:args.video_frames]
            clip = str(write_clip(frames, work / "whole_clip.avi"))
            print(f"\nthe clip's first {len(frames)} frames scored whole, frames/s:\n{'nf':>4} {'prec':>5} {'variant':>10} "
                  f"{'--video':>8} {'--calibrate':>12}")
            for precision in args.precision:
                for nf in args.video_nf:
                    for variant in variants:
                        whole = whole_clip_rows(args.device, nf, precision, variant, clip, frames, work)
                        print(f"{nf:>4} {precision:>5} {variant.name:>10} {whole['video']:>8.2f} "
                              f"{whole['calibrate']:>12.2f}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
