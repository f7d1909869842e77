"""Score the test split of the configured dataset with the trained model and report frame-level AUROC."""
import sys

from utils.cli import run_script
from utils.errors import VECError
from utils.pipeline import run_testing


def run(cfg, args):
    if args.video:
        return run_videos(cfg, args)
    if args.model is not None or args.labels is not None or args.fps is not None or args.accept_short_video:
        raise VECError("--model, --labels, --fps and --accept-short-video go with --video PATH")
    report = run_testing(cfg)
    print(f"results in {report['results_dir']}: metrics.json, per_video.csv, frame_scores.npy, plots")
    print(f"report: {report['results_dir']}/report.html")
    extra = "".join(f", {name} {report[key]:.4f}" for key, name in (("pixel_auroc", "pixel AUROC"), ("rbdc", "RBDC"),
                                                                    ("tbdc", "TBDC")) if report.get(key) is not None)
    print(f"{report['n_frames']} test frames, {report['n_cubes']} cubes; macro AUROC {report['auroc_macro']:.4f}, "
          f"AP {report['average_precision']:.4f}, EER {report['eer']:.4f}{extra}")
    print(f"frame-level AUROC (micro) on {report['dataset']}: {report['auroc_micro']:.4f}")


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


def add_arguments(parser):
    parser.add_argument("--video", nargs="+", metavar="PATH",
                        help="score your own videos instead: video files (any container OpenCV reads) or folders "
                             "of frames (.jpg/.png/.tif/.bmp, sorted by name); results in "
                             "results/videos/<name>-<digest of the path>/ (docs/own_videos.md)")
    parser.add_argument("--model", metavar="DIR",
                        help="with --video: the folder holding the trained model files of another run "
                             "(e.g. data/video_sets/<set>/raw2flow); default: the configured dataset's model")
    parser.add_argument("--labels", nargs="+", metavar="FILE",
                        help="with --video: one 0/1 per frame (.txt or .npy), one file per video in the same "
                             "order; prints the frame-level AUROC")
    parser.add_argument("--fps", type=float, metavar="N",
                        help="with --video: frame rate of folders of frames, 0.01 to 1000 (default 25); "
                             "a video file's own rate wins")
    parser.add_argument("--accept-short-video", action="store_true",
                        help="with --video: score a video that decodes to fewer frames than its container declares "
                             "(some containers declare a wrong count); otherwise that is an error, as a cut file "
                             "looks the same")


def main(argv: list[str] | None = None) -> int:
    return run_script(__doc__.splitlines()[0], run, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
