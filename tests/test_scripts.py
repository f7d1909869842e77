"""The entry scripts as a user runs them: a real config file, real frames; each script's main(argv) in
this process, and a real subprocess where only a process shows it (the interpreter's exit status)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, SCRIPTS, run_main, write_config
from utils.datasets import generate_synthetic as generate


@pytest.mark.slow  # the session's prepared run (tests/conftest.py) is made for it
def test_flow_train_test_end_to_end(scored_run):
    """calc_img_inputs.py, train.py and test.py one after the other on the prepared synthetic set
    (2 train and 2 test videos of 12 frames, nf 2, one epoch: tests/conftest.py)."""
    root = scored_run.root
    assert len(list((root / "optical_flow" / "synthetic" / "Train").rglob("*.npy"))) == 24
    assert (root / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.npy").is_file()
    results = root / "results" / "synthetic"
    metrics = json.loads((results / "metrics.json").read_text())
    assert {"auroc_micro", "auroc_macro", "eer", "n_frames"} <= set(metrics) and metrics["n_frames"] == 24
    assert 0 <= metrics["auroc_micro"] <= 1
    assert np.load(results / "frame_scores.npy").shape == (24,)
    for figure in ("frame_scores.png", "roc.png", "top_frames.png"):
        assert (results / figure).stat().st_size > 0, figure
    last_line = scored_run.stdout["test.py"].strip().splitlines()[-1]
    assert last_line == f"frame-level AUROC (micro) on synthetic: {metrics['auroc_micro']:.4f}"


@pytest.mark.slow  # a real Python process: its imports alone take seconds
def test_bad_config_is_one_line_and_exit_2(tmp_path):
    """A real process: the interpreter's exit status and everything on its stderr."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("detector = none", "detector = yolo"))
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "detector = 'yolo' is not one of" in done.stderr


def test_test_without_trained_model_leaves_nothing(tmp_path, capfd):
    generate(tmp_path / "raw_datasets" / "synthetic", seed=3, n_train=1, n_test=1, n_frames=12, progress=False)
    done = run_main(capfd, "test.py", "--config", write_config(tmp_path))
    assert done.returncode == 2 and "run `python train.py` first" in done.stderr
    assert not (tmp_path / "results").exists()


def test_misspelled_key_fails_before_any_work(tmp_path, capfd):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("nf = 8\n", "nf = 8\nepoch = 3\n"))
    for script in SCRIPTS:
        done = run_main(capfd, script, "--config", config)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].endswith("unknown key 'epoch' in [synthetic]; did you mean 'epochs'?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.cfg"]  # nothing generated, nothing written


@pytest.mark.slow
def test_set_overrides_the_config_file_in_all_three_scripts(tmp_path, capfd):
    generate(tmp_path / "raw_datasets" / "synthetic", seed=4, n_train=1, n_test=2, n_frames=12, progress=False)
    config = write_config(tmp_path)
    flow = ["--set", "shared_parameters.optical_flow_dir=flow_from_set"]
    assert run_main(capfd, "calc_img_inputs.py", "--config", config, *flow).returncode == 0
    assert len(list((tmp_path / "flow_from_set" / "synthetic").rglob("*.npy"))) == 36
    done = run_main(capfd, "train.py", "--config", config, *flow, "--set", "synthetic.nf=2",
                    "--set", "synthetic.epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    model = torch.load(tmp_path / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.npy")
    assert model[0][0][0]["module.inc0.conv.conv.0.weight"].shape[0] == 2  # nf = 2, not the file's 8
    done = run_main(capfd, "test.py", "--config", config, *flow, "--set", "synthetic.nf=2",
                    "--set", "shared_parameters.results_dir=res")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "res" / "synthetic" / "metrics.json").is_file() and not (tmp_path / "results").exists()
