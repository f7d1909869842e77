"""Score the test split of the configured dataset with the trained model and report frame-level AUROC."""
from utils.cli import run_script
from utils.pipeline import run_testing


def main(cfg, args):
    report = run_testing(cfg)
    print(f"results in {report['results_dir']}: metrics.json, per_video.csv, frame_scores.npy, plots")
    print(f"report: {report['results_dir']}/report.html")
    extra = "".join(f", {name} {report[key]:.4f}" for key, name in (("pixel_auroc", "pixel AUROC"), ("rbdc", "RBDC"),
                                                                    ("tbdc", "TBDC")) if report.get(key) is not None)
    print(f"{report['n_frames']} test frames, {report['n_cubes']} cubes; macro AUROC {report['auroc_macro']:.4f}, "
          f"AP {report['average_precision']:.4f}, EER {report['eer']:.4f}{extra}")
    print(f"frame-level AUROC (micro) on {report['dataset']}: {report['auroc_micro']:.4f}")


if __name__ == "__main__":
    run_script(__doc__.splitlines()[0], main)
