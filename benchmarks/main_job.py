"""Wall time, peak memory and AUROC of the README's main job (flow → train → test) on a fresh copy.

    python benchmarks/main_job.py [--config config.cfg]

Runs the three scripts in a temporary folder (so nothing in the repository is reused or
overwritten) and prints one line per stage and the totals.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.cfg"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.cfg"
        shutil.copy(args.config, config)
        total = 0.0
        print(f"{'stage':<20}{'seconds':>10}{'peak RSS (MiB)':>18}")
        for script in ("calc_img_inputs.py", "train.py", "test.py"):
            started = time.perf_counter()
            child = subprocess.Popen([sys.executable, str(REPO / script), "--config", str(config)], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            stderr = child.stderr.read()
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
            seconds = time.perf_counter() - started
            if status:
                sys.exit(f"{script} failed: {stderr.strip().splitlines()[-1]}")
            print(f"{script:<20}{seconds:>10.1f}{usage.ru_maxrss / 1024:>18.0f}")
            total += seconds
        metrics = json.loads(next(Path(tmp).glob("results/*/metrics.json")).read_text())
        print(f"{'total':<20}{total:>10.1f}")
        print(f"micro AUROC {metrics['auroc_micro']:.4f}, macro AUROC {metrics['auroc_macro']:.4f}, "
              f"EER {metrics['eer']:.4f} on {metrics['n_frames']} frames of {metrics['dataset']}")


if __name__ == "__main__":
    main()
