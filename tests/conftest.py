"""Shared fixtures, each made once per session: small synthetic datasets on disk (with their optical flow),
config files for them, a prepared run of the scripts (their main(argv) in this process), and the big
networks with the golden vectors' stand-in weights."""
import contextlib
import importlib.util
import io
import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.config import load_config
from utils.datasets import open_split
from utils.flow import OpenCVFlow, compute_split_flow
from utils.datasets import generate_synthetic as generate
from utils.fingerprints import CubeSpec
from utils.infra.precision import emulated_on_this_cpu

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = ("calc_img_inputs.py", "train.py", "test.py")
# The paper's cube recipe (config.cfg) on DIS flow, for tests that build stores directly.
PAPER_CUBES = CubeSpec(patch_size=32, context_frame_num=4, context_of_num=4, border_mode="predict", motion_thr=0,
                       h_block=1, w_block=1, block_mode=1, flow_method="dis")


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


# ---- the entry scripts, in this process -----------------------------------------------------------

_script_modules = {}


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth grey-green BGR texture (uint8) for test videos, drawn from `rng`."""
    texture = cv2.GaussianBlur(rng.normal(130, 25, (height, width)), (0, 0), 2)
    return np.clip(np.stack([texture, texture * 0.9 + 10, texture * 1.1 - 10], -1), 0, 255).astype(np.uint8)


def write_video(path: Path, frames, fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    """BGR frames of one size written with OpenCV's `fourcc` codec (its folder made)."""
    frames = iter(frames)
    first = next(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (first.shape[1], first.shape[0]))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path}"
    for frame in itertools.chain([first], frames):
        writer.write(frame)
    writer.release()
    return path


def write_frame_folder(folder: Path, frames, suffix: str = ".png") -> Path:
    """A folder of frames named img_0000<suffix>, img_0001<suffix>, …"""
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"img_{i:04d}{suffix}"), frame)
    return folder


def script_module(script: str):
    """calc_img_inputs.py, train.py or test.py imported as a module (under another name: `test` is
    also a standard-library package)."""
    if script not in _script_modules:
        spec = importlib.util.spec_from_file_location(f"vec_script_{Path(script).stem}", REPO / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _script_modules[script] = module
    return _script_modules[script]


def run_main(capture, script: str, *argv) -> subprocess.CompletedProcess:
    """`script`'s main(argv) in this process, read back like a finished process: its exit status,
    and what it wrote to stdout and stderr (`capture`: pytest's capfd, or None inside a fixture).
    A Python start and a torch import less than a subprocess; what only a real process shows
    (exit status of the interpreter, SIGKILL, torchrun) keeps real subprocesses in the tests."""
    argv = [str(a) for a in argv]

    def main() -> int:
        try:
            return script_module(script).main(argv)
        except SystemExit as exit_:  # argparse's own errors (exit status 2), as a process ends on them
            return exit_.code

    if capture is None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main()
        return subprocess.CompletedProcess([script, *argv], status, out.getvalue(), err.getvalue())
    capture.readouterr()  # what earlier steps of the test printed is not this run's output
    status = main()
    out, err = capture.readouterr()
    return subprocess.CompletedProcess([script, *argv], status, out, err)


# ---- data --------------------------------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """The folder of a tiny synthetic dataset: 2 train and 2 test videos of 12 frames (seed 5), frames and
    ground truth only. Read only: copy it to change it."""
    return generate(tmp_path_factory.mktemp("tiny") / "synthetic", seed=5, n_train=2, n_test=2, n_frames=12,
                    progress=False)


# The prepared run's settings; write_config sets them in [synthetic], the first section that has them.
SMALL_RUN = {"nf": 2, "epochs": 1, "smoothing_sigma": 2}


@dataclass(frozen=True)
class PreparedRun:
    root: Path  # raw_datasets/, optical_flow/, data/ and config.cfg (SMALL_RUN): the state before test.py
    stdout: dict  # script name -> what it printed


@pytest.fixture(scope="session")
def prepared_run(tiny_synthetic, tmp_path_factory) -> PreparedRun:
    """The tiny synthetic dataset (2 train, 2 test videos of 12 frames) after calc_img_inputs.py and
    train.py (SMALL_RUN: nf 2, one epoch), run in this process: flow, boxes, train cubes and a trained
    model. Read only: tests that change it work on a copy (`copy_prepared`)."""
    root = tmp_path_factory.mktemp("prepared")
    shutil.copytree(tiny_synthetic, root / "raw_datasets" / "synthetic")
    config = write_config(root, **SMALL_RUN)
    stdout = {}
    for script in SCRIPTS[:2]:
        done = run_main(None, script, "--config", config)
        assert done.returncode == 0, done.stderr[-2000:]
        stdout[script] = done.stdout
    return PreparedRun(root, stdout)


def copy_prepared(prepared: PreparedRun, destination: Path) -> Path:
    shutil.copytree(prepared.root, destination, dirs_exist_ok=True)
    return destination


@pytest.fixture(scope="session")
def scored_run(prepared_run, tmp_path_factory) -> PreparedRun:
    """A copy of the prepared run after test.py (in this process): results/synthetic/ and the test boxes and cubes."""
    root = copy_prepared(prepared_run, tmp_path_factory.mktemp("scored"))
    done = run_main(None, "test.py", "--config", root / "config.cfg")
    assert done.returncode == 0, done.stderr[-2000:]
    return PreparedRun(root, {**prepared_run.stdout, "test.py": done.stdout})


# ---- the big networks with the golden vectors' stand-in weights (building one takes seconds) ---------

@pytest.fixture(scope="session")
def cascade_golden():
    """Cascade R-CNN R101-FPN in eval mode with det_fill weights, as the golden vectors were made.
    Shared by the tests of the session: use it, never change its weights or mode."""
    from models import CascadeRCNN
    from support.stand_in_weights import det_fill

    model = CascadeRCNN()
    model.load_state_dict(det_fill(model.state_dict()))
    return model.eval()


@pytest.fixture(scope="session")
def cascade_golden_feats(cascade_golden):
    """cascade_golden's FPN features (P2-P6) of the golden input image: one full R101 pass, made once."""
    inputs = np.load(REPO / "tests" / "data" / "cascade_rcnn.npz")["inputs"]
    with torch.no_grad():
        return cascade_golden.extract_feat(torch.from_numpy(inputs))


@pytest.fixture(scope="session")
def flownet2_golden():
    """FlowNet2 in eval mode with det_fill weights, as the golden vectors were made. Shared: never change it.
    Built on the meta device, its det_fill tensors then assigned: no random initialisation of 162 M weights
    to overwrite (FlowNet2 has no state outside its state dict)."""
    from FlowNet2_src import FlowNet2
    from support.stand_in_weights import det_fill

    with torch.device("meta"):
        model = FlowNet2()
    model.load_state_dict(det_fill(model.state_dict()), assign=True)
    return model.eval()


@pytest.fixture(scope="session")
def flownet2_golden_flow(flownet2_golden):
    """flownet2_golden's fp32 flow of the golden input pair: one full pass, made once."""
    inputs = np.load(REPO / "tests" / "data" / "flownet2_forward.npz")["inputs"]
    with torch.no_grad():
        return flownet2_golden(torch.from_numpy(inputs))
