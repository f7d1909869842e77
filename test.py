"""Score the test split of the configured dataset with the trained model and report frame-level AUROC."""
import sys
from pathlib import Path

from utils.cli import run_script
from utils.infra.errors import VECError
from utils.metrics.table import summary_line
from utils.pipeline import run_testing


# The options that go with some modes only (--video, --live, --calibrate: argparse keeps those apart), by
# destination: the modes they go with. add_arguments fills it as it declares them.
GOES_WITH: dict[str, tuple[str, ...]] = {}


def run(cfg, args):
    mode = next((f"--{name}" for name in ("video", "live", "calibrate") if getattr(args, name) not in (None, [])), None)
    for name, modes in GOES_WITH.items():
        if getattr(args, name) not in (None, False) and mode not in modes:
            raise VECError(f"--{name.replace('_', '-')} goes with {' or '.join(modes)}")
    if args.video:
        return run_videos(cfg, args)
    if mode is not None:
        return run_live(cfg, args)
    released = None
    if args.model is not None:
        cfg, released = config_for_model(cfg, args)
    report = run_testing(cfg, None if args.model is None else Path(args.model), released)
    print(f"results in {report['results_dir']}: metrics.json, per_video.csv, frame_scores.npy, plots")
    print(f"report: {report['results_dir']}/report.html")
    print(summary_line(report))
    compared = (f" (released model {released.name}: {released.released_auroc:.3f} as released, "
                f"{released.paper_auroc:.3f} in the paper)" if released is not None else "")
    print(f"frame-level AUROC (micro) on {report['dataset']}: {report['auroc_micro']:.4f}{compared}")


def config_for_model(cfg, args):
    """The config for `--model DIR` on the test split: a released set brings its dataset and
    context_of_num (its files checked first); any other folder is scored with the config as it is."""
    from utils.config import load_config
    from utils.released import check_released_folder, released_overrides, released_set_in

    released = released_set_in(Path(args.model))
    if released is None:
        return cfg, None
    check_released_folder(Path(args.model), released)
    print(f"released model {released.name}: {released.dataset}, {released.variant} "
          f"(context_of_num = {released.context_of_num}), files verified")
    return load_config(args.config, [*args.overrides, *released_overrides(released)]), released


def run_videos(cfg, args):
    from utils.own_video import score_videos

    for s in score_videos(cfg, args.video, args.model, args.labels, args.fps, args.accept_short_video):
        top = (f"; highest score {s['top_score']:.3f} at {s['top_time_s']:.2f} s (frame {s['top_frame']})"
               if "top_frame" in s else "; no frame has a box")
        print(f"{s['name']}: {s['n_frames']} frames at {s['fps']:g} fps, {s['n_cubes']} cubes{top}")
        print(f"results in {s['results_dir']}: frame_scores.csv, frame_scores.png, annotated.mp4, video.json"
              + (", metrics.json" if "auroc" in s else ""))
        if "auroc" in s:
            print(f"frame-level AUROC on {s['name']}: " + ("undefined (the labels hold one class only)"
                                                          if s["auroc"] is None else f"{s['auroc']:.4f}"))


def run_live(cfg, args):
    from utils.live import calibrate, watch
    from utils.live.status import milliseconds

    min_gap = 2.0 if args.min_gap is None else args.min_gap
    if args.calibrate:
        done = calibrate(cfg, args.calibrate, model_dir=args.model, min_gap=min_gap, fps=args.fps,
                         false_alarms_per_hour=1.0 if args.false_alarms_per_hour is None else args.false_alarms_per_hour)
        print(f"threshold {done['threshold']:.4f}: {done['events_at_threshold']} alarm(s) on {done['frames']} normal "
              f"frames ({done['seconds']:.0f} s; {done['allowed_events']} allowed at {done['false_alarms_per_hour']:g} "
              f"per hour); highest normal score {done['normal_scores']['max']:.4f}; a frame took "
              f"{milliseconds(done['score_seconds_median'])} to score")
        print(f"saved in {done['path']}; `python test.py --live SOURCE` uses it")
        return
    s = watch(cfg, args.live, model_dir=args.model, threshold=args.threshold, min_gap=min_gap,
              retries=5 if args.retries is None else args.retries)
    print(f"stopped, {s['ended_by']}: {s['frames_in']} frames in, {s['scored']} scored, {s['dropped']} dropped, "
          f"{s['not_scored_by_stride']} left out by the stride; delay median {milliseconds(s['delay_median_s'])}, 95th percentile "
          f"{milliseconds(s['delay_p95_s'])}; {s['events']} alarm(s)"
          + (f"; {s['broken_skipped']} broken frame(s) skipped (cut short or not decodable)" if s["broken_skipped"] else ""))
    print(f"results in {s['results_dir']}: scores.csv, events.jsonl, run.json"
          + (", event_*.jpg" if s["events"] else ""))


def add_arguments(parser):
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--video", nargs="+", metavar="PATH",
                        help="score your own videos instead: video files (any container OpenCV reads) or folders "
                             "of frames (.jpg/.png/.tif/.bmp, sorted by name); results in "
                             "results/videos/<name>-<digest of the path>/ (docs/own_videos.md)")
    modes.add_argument("--live", metavar="SOURCE",
                        help="watch a camera instead: a camera index (0), a stream URL (rtsp://…, http://…/video.mjpg) "
                             "or a video file (played at its own rate); scores and alarms as the frames arrive, "
                             "in results/live/<name>/ (docs/live.md)")
    modes.add_argument("--calibrate", nargs="+", metavar="VIDEO",
                        help="score normal footage (video files or folders of frames) and store the alarm threshold "
                             "that --live uses beside the model")
    parser.add_argument("--model", metavar="DIR",
                        help="the folder holding the trained model files of another run (e.g. "
                             "data/video_sets/<set>/raw2flow), or a released model set (data/released/<set name>, "
                             "which brings its dataset and context_of_num); alone: scores the test split; default: "
                             "the configured dataset's model")

    def option_of(modes: str, flag: str, help: str, **kwargs) -> None:
        """An option of some modes: GOES_WITH and its help say which."""
        GOES_WITH[flag[2:].replace("-", "_")] = tuple(modes.split())
        parser.add_argument(flag, help=f"with {' or '.join(modes.split())}: {help}", **kwargs)

    option_of("--live", "--threshold", "raise an alarm when a frame's score exceeds T (default: the calibrated one)",
              type=float, metavar="T")
    option_of("--calibrate", "--false-alarms-per-hour", "alarms allowed per hour of the normal footage (default 1)",
              type=float, metavar="N")
    option_of("--live --calibrate", "--min-gap", "an alarm ends after S seconds at or below the threshold (default 2)",
              type=float, metavar="S")
    option_of("--live", "--retries", "reopen a camera or stream that stops up to N times (default 5)", type=int,
              metavar="N")
    option_of("--video", "--labels", "one 0/1 per frame (.txt or .npy), one file per video in the same order; prints "
              "the frame-level AUROC", nargs="+", metavar="FILE")
    option_of("--video --calibrate", "--fps", "frame rate of folders of frames, 0.01 to 1000 (default 25); a video "
              "file's own rate wins", type=float, metavar="N")
    option_of("--video", "--accept-short-video", "score a video that decodes to fewer frames than its container "
              "declares (some containers declare a wrong count); otherwise that is an error, as a cut file looks the "
              "same", action="store_true")

def main(argv: list[str] | None = None) -> int:
    return run_script(__doc__.splitlines()[0], run, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
