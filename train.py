"""Train VEC's cloze networks on the configured dataset (boxes → cubes → training → statistics)."""
import sys

from utils.cli import run_script
from utils.infra.errors import VECError
from utils.pipeline import run_training


def run(cfg, args):
    if args.videos is not None:
        from utils.own_video import train_on_videos

        summary = train_on_videos(cfg, args.videos, args.accept_short_video)
        print(f"trained on {summary['n_cubes']} cubes from {summary['n_frames']} frames of {summary['n_videos']} "
              f"videos in {summary['seconds']:.0f} s; saved {', '.join(summary['saved'])}")
        if summary["short_videos_accepted"]:
            print(f"accepted short videos (--accept-short-video): {', '.join(summary['short_videos_accepted'])}")
        print(f"score a video with it: python test.py --video PATH --model {summary['model_dir']}")
        return
    if args.accept_short_video:
        raise VECError("--accept-short-video goes with --videos DIR")
    summary = run_training(cfg)
    print(f"trained on {summary['n_cubes']} cubes from {summary['n_frames']} frames "
          f"in {summary['seconds']:.0f} s; saved {', '.join(summary['saved'])}")


def add_arguments(parser):
    parser.add_argument("--videos", metavar="DIR",
                        help="train on your own normal videos instead: the video files and folders of frames "
                             "directly inside DIR (model saved in data/video_sets/<DIR's name>-<digest>/raw2flow/)")
    parser.add_argument("--accept-short-video", action="store_true",
                        help="with --videos: train on videos that decode to fewer frames than their containers "
                             "declare (otherwise an error: a cut file looks the same)")


def main(argv: list[str] | None = None) -> int:
    return run_script(__doc__.splitlines()[0], run, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
