"""Train VEC's cloze networks on the configured dataset (boxes → cubes → training → statistics)."""
from utils.cli import run_script
from utils.pipeline import run_training


def main(cfg, args):
    summary = run_training(cfg)
    print(f"trained on {summary['n_cubes']} cubes from {summary['n_frames']} frames "
          f"in {summary['seconds']:.0f} s; saved {', '.join(summary['saved'])}")


if __name__ == "__main__":
    run_script(__doc__.splitlines()[0], main)
