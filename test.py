"""Score the test split of the configured dataset with the trained model and report frame-level AUROC."""
from utils.cli import run_script
from utils.pipeline import run_testing


def main(cfg, args):
    report = run_testing(cfg)
    print(f"results in {report['results_dir']}: metrics.json, frame_scores.npy, frame_scores.png, roc.png, top_frames.png")
    print(f"{report['n_frames']} test frames, {report['n_cubes']} cubes; macro AUROC {report['auroc_macro']:.4f}, "
          f"EER {report['eer']:.4f}")
    print(f"frame-level AUROC (micro) on {report['dataset']}: {report['auroc_micro']:.4f}")


if __name__ == "__main__":
    run_script(__doc__.splitlines()[0], main)
