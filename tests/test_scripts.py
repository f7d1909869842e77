"""The entry scripts as a user runs them: a real config file, real frames, real subprocesses."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, write_config
from utils.datasets import generate_synthetic as generate


def _run(script, config, *args):
    return subprocess.run([sys.executable, str(REPO / script), "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.slow
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


def test_misspelled_key_fails_before_any_work(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("nf = 8\n", "nf = 8\nepoch = 3\n"))
    for script in ("calc_img_inputs.py", "train.py", "test.py"):
        done = _run(script, config)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].endswith("unknown key 'epoch' in [synthetic]; did you mean 'epochs'?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.cfg"]  # nothing generated, nothing written


@pytest.mark.slow
def test_set_overrides_the_config_file_in_all_three_scripts(tmp_path):
    import torch

    generate(tmp_path / "raw_datasets" / "synthetic", seed=4, n_train=1, n_test=2, n_frames=12, progress=False)
    config = write_config(tmp_path)
    flow = ["--set", "shared_parameters.optical_flow_dir=flow_from_set"]
    assert _run("calc_img_inputs.py", config, *flow).returncode == 0
    assert len(list((tmp_path / "flow_from_set" / "synthetic").rglob("*.npy"))) == 36
    done = _run("train.py", config, *flow, "--set", "synthetic.nf=2", "--set", "synthetic.epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    model = torch.load(tmp_path / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.npy")
    assert model[0][0][0]["module.inc0.conv.conv.0.weight"].shape[0] == 2  # nf = 2, not the file's 8
    done = _run("test.py", config, *flow, "--set", "synthetic.nf=2", "--set", "shared_parameters.results_dir=res")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "res" / "synthetic" / "metrics.json").is_file() and not (tmp_path / "results").exists()
