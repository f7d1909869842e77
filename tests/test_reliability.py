"""Messy data, bad settings, full disks and stale caches, as a user meets them: the real scripts
on a broken copy of a small prepared run. Each bad case must end with exit code 2, one last
stderr line that names the problem, no traceback, and no half-written files.

The scripts' main(argv) runs in this process (tests/conftest.py, run_main); real processes where only
a process shows it: a SIGKILL in the middle of a run, and a full disk under a memory-mapped file."""
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO, SMALL_RUN, copy_prepared, run_main, write_config
from utils.datasets import generate_synthetic

pytestmark = pytest.mark.slow  # each case runs the real scripts
MODEL = "data/raw2flow/synthetic_model_obj_det_with_motion_SelfComplete"
SHARED_KEYS = {"device", "seed", "results_dir", "data_root_dir", "optical_flow_dir", "dataset_name"}


def overrides(**settings) -> list[str]:
    """Each setting as `--set` ([synthetic] or [shared_parameters])."""
    return [f"--set={'shared_parameters' if key in SHARED_KEYS else 'synthetic'}.{key}={value}"
            for key, value in settings.items()]


@pytest.fixture
def run(capfd):
    """run(script, root, *args, **settings): `script` on the config of `root` (the prepared run's settings),
    each setting given as `--set`."""
    def run(script, root, *args, **settings):
        config = write_config(root, **SMALL_RUN)
        return run_main(capfd, script, "--config", config, *overrides(**settings), *args)
    return run


def set_in_file(config: Path, section: str, key: str, value: str) -> None:
    """Write `key = value` into `section` of the config file, replacing the key there if present."""
    out, current = [], None
    for line in config.read_text().splitlines():
        if line.startswith("["):
            if current == section:
                out.append(f"{key} = {value}")
            current = line.strip()[1:-1]
        elif current == section and line.split("=")[0].strip() == key:
            continue
        out.append(line)
    if current == section:
        out.append(f"{key} = {value}")
    config.write_text("\n".join(out) + "\n")


def assert_fails_cleanly(done, *needles, root=None):
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, (needle, last)
    if root is not None:
        leftovers = [p for p in Path(root).rglob("*") if p.name.endswith((".tmp", ".partial"))]
        assert not leftovers, leftovers
    return last


@pytest.fixture
def prepared(prepared_run):
    """The session's prepared run (tests/conftest.py): 2 train and 2 test videos of 12 frames with their
    flow, boxes, cubes and a trained model (nf 2, one epoch). Read only."""
    return prepared_run.root


@pytest.fixture
def copy(prepared_run, tmp_path):
    return copy_prepared(prepared_run, tmp_path)


def test_prepared_run_scores(copy, run):
    done = run("test.py", copy)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (copy / "results" / "synthetic" / "metrics.json").is_file()


# --- the configuration, checked before any work ----------------------------------------------
@pytest.mark.parametrize("key, value, needles", [
    ("patch_size", "-3", ["[synthetic] patch_size", "-3", "≥ 8"]),
    ("batch_size", "0", ["[synthetic] batch_size", "≥ 1"]),
    ("nf", "0", ["[synthetic] nf", "≥ 1"]),
    ("epochs", "abc", ["[synthetic] epochs", "'abc' is not an integer"]),
    ("device", "gpu", ["[shared_parameters] device", "gpu is not a device"]),
    ("seed", "-1", ["[shared_parameters] seed", "out of range"]),
])
def test_bad_values_fail_before_any_work(copy, key, value, needles, capfd):
    cubes = sorted((copy / "data" / "raw2flow").iterdir())
    config = write_config(copy, **SMALL_RUN)
    set_in_file(config, "shared_parameters" if key in SHARED_KEYS else "synthetic", key, value)
    done = run_main(capfd, "train.py", "--config", config)
    assert_fails_cleanly(done, "config.cfg", *needles, root=copy)
    assert sorted((copy / "data" / "raw2flow").iterdir()) == cubes


# --- data, checked where it is read -------------------------------------------------------------
def test_jpeg_cut_in_half_is_an_error(tmp_path, capfd):
    """Avenue layout: OpenCV decodes a cut JPEG with a grey bottom half and no error; we refuse it."""
    generate_synthetic(tmp_path / "tif", seed=6, n_train=1, n_test=1, n_frames=6, progress=False)
    for split, folder in (("Train", "training"), ("Test", "testing")):
        for video in sorted(p for p in (tmp_path / "tif" / split).iterdir() if not p.name.endswith("_gt")):
            out = tmp_path / "raw_datasets" / "mine" / folder / "frames" / video.name[-2:]
            out.mkdir(parents=True)
            for frame in sorted(video.glob("*.tif")):
                cv2.imwrite(str(out / (frame.stem + ".jpg")), cv2.imread(str(frame)))
    victim = tmp_path / "raw_datasets" / "mine" / "training" / "frames" / "01" / "004.jpg"
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
    assert cv2.imread(str(victim)) is not None  # the trap: OpenCV reads it
    config = write_config(tmp_path, dataset_name="mine")
    config.write_text(config.read_text() + "\n[mine]\nlayout = avenue\nflow_method = dis\ndetector = none\n")
    assert "dataset_name = mine" in config.read_text()
    done = run_main(capfd, "calc_img_inputs.py", "--config", config)
    assert_fails_cleanly(done, str(victim), "cut short", root=tmp_path)


def test_ground_truth_shifted_between_videos_is_caught(copy, run):
    test_dir = copy / "raw_datasets" / "synthetic" / "Test"
    moved = sorted((test_dir / "Test001_gt").glob("*.bmp"))[-1]
    moved.rename(test_dir / "Test002_gt" / "frame000.bmp")  # same total count, labels shifted by one video
    assert_fails_cleanly(run("test.py", copy), "Test001_gt", "11 ground-truth masks for 12 frames of video Test001",
                         root=copy)
    assert not (copy / "results").exists()


def test_frames_of_different_sizes_name_the_frame_and_video(copy, run):
    frame = copy / "raw_datasets" / "synthetic" / "Test" / "Test002" / "007.tif"
    cv2.imwrite(str(frame), cv2.resize(cv2.imread(str(frame)), (120, 80)))
    shutil.rmtree(copy / "optical_flow")
    assert_fails_cleanly(run("calc_img_inputs.py", copy), str(frame), "video Test002", "120x80", root=copy)


def test_one_frame_video_names_the_video_and_the_minimum(copy, run):
    video = copy / "raw_datasets" / "synthetic" / "Train" / "Train003"
    video.mkdir()
    shutil.copy(copy / "raw_datasets" / "synthetic" / "Train" / "Train001" / "001.tif", video / "001.tif")
    assert_fails_cleanly(run("calc_img_inputs.py", copy), "video Train003", "1 frame(s)", "at least 2", root=copy)


def test_truncated_flow_file_names_the_file_and_the_fix(copy, run):
    flow = copy / "optical_flow" / "synthetic" / "Train" / "Train001" / "005.npy"
    flow.write_bytes(flow.read_bytes()[:300])
    assert_fails_cleanly(run("train.py", copy), str(flow), "calc_img_inputs.py", root=copy)


# --- the trained model knows how it was made ------------------------------------------------------
def test_model_refuses_other_patch_size_or_nf(copy, run):
    last = assert_fails_cleanly(run("test.py", copy, patch_size=16), "patch_size = 32 when trained, 16 now")
    assert "train.py" in last
    assert_fails_cleanly(run("test.py", copy, nf=4), "nf = 2 when trained, 4 now")
    assert not (copy / "results").exists()


def test_reference_style_model_with_other_nf_is_one_line(copy, run):
    Path(f"{copy / MODEL}.json").unlink()  # as the reference saves it: no manifest
    assert_fails_cleanly(run("test.py", copy, nf=4), "does not fit the configured network (nf = 4")


@pytest.mark.parametrize("name", ["model", "raw_training_scores"])
def test_truncated_or_mixed_model_files_name_the_file(copy, name, run):
    path = copy / "data" / "raw2flow" / f"synthetic_{name}_obj_det_with_motion_SelfComplete.npy"
    path.write_bytes(path.read_bytes()[:100])  # a kill mid-write by another tool, or a new file beside old ones
    assert_fails_cleanly(run("test.py", copy), str(path), "train.py")
    Path(f"{copy / MODEL}.json").unlink()  # no manifest: the file itself must still give one line
    path.write_bytes(b"")
    assert_fails_cleanly(run("test.py", copy), str(path), "truncated")


def test_truncated_box_file_names_the_file(copy, run):
    assert run("test.py", copy).returncode == 0  # writes the test box file
    boxes = copy / "raw_datasets" / "synthetic" / "bboxes_test_obj_det_with_motion.npy"
    boxes.write_bytes(boxes.read_bytes()[:200])
    assert_fails_cleanly(run("test.py", copy, test_bbox_saved="True"), str(boxes), "delete it")


def test_zero_test_cubes_is_an_error_without_metrics(copy, run):
    Path(f"{copy / MODEL}.json").unlink()  # a model trained elsewhere: nothing stops other thresholds
    assert_fails_cleanly(run("test.py", copy, area_thr="1000*1000*1000"), "no test cubes", root=copy)
    assert not (copy / "results").exists()


def test_test_set_with_one_class_is_an_error(copy, run):
    for mask in (copy / "raw_datasets" / "synthetic" / "Test").glob("*_gt/*.bmp"):
        cv2.imwrite(str(mask), np.zeros((160, 240), np.uint8))
    assert_fails_cleanly(run("test.py", copy), "every test frame of synthetic is normal", "both classes")
    assert not (copy / "results").exists()


# --- folders and disks --------------------------------------------------------------------------
def test_output_folder_under_a_regular_file_fails_before_the_work(copy, run):
    (copy / "blocker").write_text("a file, not a folder")
    assert_fails_cleanly(run("test.py", copy, results_dir="blocker/results"), "blocker", "in the way")
    assert_fails_cleanly(run("train.py", copy, data_root_dir="blocker/data"), "blocker", "in the way")


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MiB at tmp_path/disk (needs root, as CI has); the test is skipped where it cannot mount."""
    def mount(size_kib):
        disk = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(disk)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"cannot mount a tmpfs here ({done.stderr.strip()}): disk-full case skipped")
            pytest.skip("mounting a tmpfs needs root")
        mounted.append(disk)
        return disk

    mounted = []
    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk, leave_bytes):
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def test_disk_full_for_flow(copy, small_disk, run):
    disk = small_disk(512)
    assert_fails_cleanly(run("calc_img_inputs.py", copy, optical_flow_dir=str(disk / "flow")),
                         "not enough disk space for the optical flow", root=disk)


def test_disk_full_for_cubes_is_an_error_not_a_bus_error(copy, small_disk):
    """A real process: a memory-mapped write beyond a full disk is a SIGBUS, which would end pytest itself."""
    disk = small_disk(1024)
    config = write_config(copy, **SMALL_RUN)
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(config),
                           *overrides(data_root_dir=str(disk / "data"))],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert_fails_cleanly(done, "not enough disk space for the train cubes", root=disk)
    assert not list(disk.rglob("*.npy"))


def test_disk_full_while_saving_the_model(copy, small_disk, run):
    disk = small_disk(64 * 1024)
    shutil.copytree(copy / "data", disk / "data")
    for path in (disk / "data" / "raw2flow").glob("synthetic_*_SelfComplete.*"):
        path.unlink()
    _fill(disk, 16 * 1024)  # cubes are reused (foreground_saved), the model cannot be written
    last = assert_fails_cleanly(run("train.py", copy, data_root_dir=str(disk / "data"), train_foreground_saved="True"),
                                "cannot write", "disk", root=disk)
    assert "SelfComplete" in last


def test_disk_full_for_results_writes_no_metrics(copy, small_disk, run):
    disk = small_disk(256)
    _fill(disk, 8 * 1024)
    assert_fails_cleanly(run("test.py", copy, results_dir=str(disk / "results")), "cannot write", "disk is full",
                         root=disk)
    assert not list(disk.rglob("metrics.json"))


# --- caches know what made them -------------------------------------------------------------------
def test_saved_boxes_made_with_other_thresholds_are_not_reused_silently(copy, run):
    done = run("train.py", copy, train_bbox_saved="True", binary_thr="30")
    assert_fails_cleanly(done, "bboxes_train_obj_det_with_motion.npy", "binary_thr = 18 there, 30 now")
    done = run("train.py", copy, train_bbox_saved="True")
    assert done.returncode == 0 and "boxes: reusing" in done.stdout
    assert run("test.py", copy).returncode == 0
    metrics = (copy / "results" / "synthetic" / "metrics.json").read_text()
    assert '"binary_thr": 18' in metrics and '"area_thr": 100' in metrics  # the thresholds are in the results


def test_saved_cubes_are_reused_when_the_boxes_are_the_same(copy, run):
    done = run("train.py", copy, train_foreground_saved="True")
    assert done.returncode == 0 and "cubes: reusing" in done.stdout, done.stdout
    done = run("train.py", copy, train_foreground_saved="True", binary_thr="30")  # other boxes: rebuilt
    assert done.returncode == 0 and "cubes: reusing" not in done.stdout


def test_a_model_beside_other_statistics_is_refused(copy, run):
    """A kill between the three model files leaves a new model beside old statistics."""
    old_scores = (copy / "data" / "raw2flow" / "synthetic_raw_training_scores_obj_det_with_motion_SelfComplete.npy")
    kept = old_scores.read_bytes()
    assert run("train.py", copy, seed=7).returncode == 0
    old_scores.write_bytes(kept)
    assert_fails_cleanly(run("test.py", copy, seed=7), str(old_scores), "train.py")


# --- what already behaved well keeps a test -------------------------------------------------------
def test_corrupt_tiff_names_the_file(copy, run):
    frame = copy / "raw_datasets" / "synthetic" / "Train" / "Train002" / "003.tif"
    frame.write_bytes(b"II*\0 this is not a tiff")
    shutil.rmtree(copy / "optical_flow")
    assert_fails_cleanly(run("calc_img_inputs.py", copy), str(frame), "corrupt")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["calc_img_inputs.py", "train.py"])
def test_killed_run_then_rerun_gives_the_same_files(copy, script, prepared, run):
    """SIGKILL in the middle, then a rerun: the files equal those of an uninterrupted run, byte for byte."""
    target = copy / ("optical_flow" if script == "calc_img_inputs.py" else "data")
    shutil.rmtree(target)
    config = write_config(copy, **SMALL_RUN)
    process = subprocess.Popen([sys.executable, str(REPO / script), "--config", str(config)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bar = "flow (train)" if script == "calc_img_inputs.py" else "train:"
    for line in process.stderr:  # tqdm's \r-separated updates: wait until some work is done
        if bar in line and re.search(r"\| *[1-9]\d*/", line):
            break
    process.kill()
    process.wait()
    assert run(script, copy).returncode == 0
    expected = sorted(p.relative_to(prepared) for p in (prepared / target.name).rglob("*") if p.is_file())
    produced = sorted(p.relative_to(copy) for p in target.rglob("*") if p.is_file())
    assert produced == expected
    for relative in expected:
        if relative.suffix == ".npy" or relative.name.endswith(".json") and "model" in relative.name:
            assert (copy / relative).read_bytes() == (prepared / relative).read_bytes(), relative


def test_unsafe_pickle_in_a_box_file_is_never_run(copy, tmp_path, run):
    marker = tmp_path / "ran"
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    boxes = copy / "raw_datasets" / "synthetic" / "bboxes_test_obj_det_with_motion.npy"

    class Exploit:
        def __reduce__(self):
            return (exec, (payload,))

    array = np.empty(1, dtype=object)
    array[0] = Exploit()
    np.save(boxes, array, allow_pickle=True)
    assert_fails_cleanly(run("test.py", copy, test_bbox_saved="True"), str(boxes))
    assert not marker.exists()

