"""Shared fixtures: a small synthetic dataset on disk with its optical flow and a config file for it."""
from pathlib import Path

import pytest

from utils.config import load_config
from utils.datasets import open_split
from utils.flow import OpenCVFlow, compute_split_flow
from utils.datasets import generate_synthetic as generate
from utils.precision import emulated_on_this_cpu

REPO = Path(__file__).resolve().parent.parent


def needs_native(precision: str):
    """Skip mark for the heavy reduced-precision tests on a CPU where `precision` runs emulated
    (bf16 with oneDNN held to AVX2 measured 24x slower than fp32: hours for these tests there).
    They run here and in CI; the light bf16 tests run everywhere."""
    return pytest.mark.skipif(emulated_on_this_cpu(precision, "cpu"),
                              reason=f"no oneDNN {precision} kernels on this CPU: emulated, too slow for this test")


def write_config(directory: Path, **overrides) -> Path:
    """A copy of the repository's config.cfg pointing all folders into `directory`."""
    text = (REPO / "config.cfg").read_text()
    settings = {"raw_dataset_dir": "raw_datasets", "data_root_dir": "data", "optical_flow_dir": "optical_flow",
                "results_dir": "results", "device": "cpu", **overrides}
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {settings.pop(key)}" if key in settings and "=" in line else line)
    path = directory / "config.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """A small synthetic dataset (3 train and 3 test videos of 24 frames) with DIS flow, and its config."""
    root = tmp_path_factory.mktemp("vec")
    generate(root / "raw_datasets" / "synthetic", seed=1, n_train=3, n_test=3, n_frames=24, progress=False)
    config_path = write_config(root)
    cfg = load_config(config_path)
    for split_name in ("train", "test"):
        split = open_split(cfg.dataset_dir, "UCSDped2", split_name)
        compute_split_flow(split, OpenCVFlow("dis"), cfg.flow_dir, progress=False)
    return cfg
