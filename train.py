"""Train VEC's cloze networks on the configured dataset (boxes → cubes → training → statistics)."""
import sys

from utils.cli import run_script
from utils.pipeline import run_training


def run(cfg, args):
    if args.videos is not None:
        from utils.video_pipeline import train_on_videos

        summary = train_on_videos(cfg, args.videos)
        print(f"trained on {summary['n_cubes']} cubes from {summary['n_frames']} frames of {summary['n_videos']} "
              f"videos in {summary['seconds']:.0f} s; saved {', '.join(summary['saved'])}")
        print(f"score a video with it: python test.py --video PATH --model {summary['model_dir']}")
        return
    summary = run_training(cfg)
    print(f"trained on {summary['n_cubes']} cubes from {summary['n_frames']} frames "
          f"in {summary['seconds']:.0f} s; saved {', '.join(summary['saved'])}")


def add_arguments(parser):
    parser.add_argument("--videos", metavar="DIR",
                        help="train on your own normal videos instead: the video files and folders of frames "
                             "directly inside DIR (model saved in data/video_sets/<DIR's name>/raw2flow/)")


def main(argv: list[str] | None = None) -> int:
    return run_script(__doc__.splitlines()[0], run, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
