"""Wall time, peak memory and AUROC of the README's main job (flow → train → test) on a fresh copy.

    python -m benchmarks.main_job [--config config.cfg]      (or python benchmarks/main_job.py ...)

Runs the three scripts, one process each, in a temporary folder (so nothing in the
repository is reused or overwritten) and prints one line per stage (seconds, the process's
peak RSS) and the totals.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/main_job.py`: import from the repository's root, as `-m` does
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.harness import run_child  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.cfg"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.cfg"
        shutil.copy(args.config, config)
        total = 0.0
        print(f"{'stage':<20}{'seconds':>10}{'peak RSS (MiB)':>18}")
        for script in ("calc_img_inputs.py", "train.py", "test.py"):
            child = run_child([sys.executable, str(REPO / script), "--config", str(config)], cwd=REPO)
            if child.returncode:
                print(f"error: {script} failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
                return 2
            print(f"{script:<20}{child.seconds:>10.1f}{child.max_rss_kib / 1024:>18.0f}")
            total += child.seconds
        metrics = json.loads(next(Path(tmp).glob("results/*/metrics.json")).read_text())
        print(f"{'total':<20}{total:>10.1f}")
        print(f"micro AUROC {metrics['auroc_micro']:.4f}, macro AUROC {metrics['auroc_macro']:.4f}, "
              f"EER {metrics['eer']:.4f} on {metrics['n_frames']} frames of {metrics['dataset']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
