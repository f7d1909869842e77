"""The entry scripts as a user runs them: a real config file, real frames, real subprocesses."""
import json
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, write_config
from utils.synthetic import generate


def _run(script, config, *args):
    return subprocess.run([sys.executable, str(REPO / script), "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_flow_train_test_end_to_end(tmp_path):
    generate(tmp_path / "raw_datasets" / "synthetic", seed=2, n_train=2, n_test=3, n_frames=20, progress=False)
    config = write_config(tmp_path, nf=4, epochs=2)
    for script in ("calc_img_inputs.py", "train.py", "test.py"):
        done = _run(script, config)
        assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "optical_flow" / "synthetic" / "Train").rglob("*.npy"))) == 40
    assert (tmp_path / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.npy").is_file()
    results = tmp_path / "results" / "synthetic"
    metrics = json.loads((results / "metrics.json").read_text())
    assert {"auroc_micro", "auroc_macro", "eer", "n_frames"} <= set(metrics) and metrics["n_frames"] == 60
    assert 0 <= metrics["auroc_micro"] <= 1
    assert np.load(results / "frame_scores.npy").shape == (60,)
    for figure in ("frame_scores.png", "roc.png", "top_frames.png"):
        assert (results / figure).stat().st_size > 0, figure
    assert done.stdout.strip().splitlines()[-1] == f"frame-level AUROC (micro) on synthetic: {metrics['auroc_micro']:.4f}"


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("detector = none", "detector = yolo"))
    done = _run("train.py", config)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "detector = 'yolo' is not one of" in done.stderr


def test_test_without_trained_model_leaves_nothing(tmp_path):
    generate(tmp_path / "raw_datasets" / "synthetic", seed=3, n_train=1, n_test=1, n_frames=12, progress=False)
    done = _run("test.py", write_config(tmp_path))
    assert done.returncode == 2 and "run `python train.py` first" in done.stderr
    assert not (tmp_path / "results").exists()
