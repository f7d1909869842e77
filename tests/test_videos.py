"""Your own video in one command: `test.py --video` and `train.py --videos` as a user runs them.

Real video files written with OpenCV, the scripts' `main(argv)` run in-process (a real
subprocess only where its own peak memory is measured), a model trained on the synthetic
data in a module fixture. The file-vs-folder comparison uses FFV1 in .avi, a lossless
codec: the decoded frames equal the PNG frames of the folder bit for bit, so the two runs
see the same pixels and, the pipeline being deterministic at one thread count, give the
same scores (compared with a 1e-6 tolerance to stay robust to float summation order).
"""
import contextlib
import csv
import importlib
import io
import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tests.conftest import REPO, textured_background, write_config, write_frame_folder, write_video
from utils.datasets import generate_synthetic
from utils.own_video.source import folder_key
HEIGHT, WIDTH = 160, 240
MODEL = "synthetic_model_obj_det_with_motion_SelfComplete.npy"


def make_frames(n, seed=0, anomaly=True):
    """Moving shapes on a textured background; with `anomaly`, a fast bright box crosses the
    top of the frame during frames n//2 … n//2+14."""
    rng = np.random.default_rng(seed)
    background = textured_background(rng, HEIGHT, WIDTH)
    for i in range(n):
        frame = background.copy()
        x = 10 + (i * 3) % (WIDTH - 40)
        cv2.rectangle(frame, (x, 50), (x + 14, 80), (40, 40, 60), -1)
        cv2.circle(frame, (WIDTH - 30 - (i * 2) % (WIDTH - 50), 115), 9, (30, 60, 30), -1)
        if anomaly and n // 2 <= i < n // 2 + 15:
            x = ((i - n // 2) * 14) % (WIDTH - 20)
            cv2.rectangle(frame, (x, 20), (x + 18, 34), (220, 220, 250), -1)
        yield frame




def run(script, config, *args):
    """A script's main(argv) in this process: (returncode, stdout, stderr) as subprocess.run gives them."""
    main = importlib.import_module(script.removesuffix(".py")).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["--config", str(config), *map(str, args)])
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def results_of(root, source):
    return root / "results" / "videos" / folder_key(source)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_back(path):
    """(frame count, (height, width), fps) of a video, counted by decoding it."""
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return count, size, fps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with a config and a tiny model trained on the synthetic data (nf = 2, one epoch)."""
    root = tmp_path_factory.mktemp("videos")
    generate_synthetic(root / "raw_datasets" / "synthetic", seed=7, n_train=2, n_test=2, n_frames=12, progress=False)
    config = write_config(root, nf=2, epochs=1)
    for script in ("calc_img_inputs.py", "train.py"):
        done = run(script, config)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (root / "data" / "raw2flow" / MODEL).is_file()
    return root, config


@pytest.fixture(scope="module")
def clip(trained):
    """clip.avi (FFV1, 60 frames) and clip_frames/ (the same frames as PNGs), scored in one call."""
    root, config = trained
    inputs = root / "inputs"
    inputs.mkdir()
    video = write_video(inputs / "clip.avi", make_frames(60), "FFV1")
    folder = write_frame_folder(inputs / "clip_frames", make_frames(60))
    done = run("test.py", config, "--video", video, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, config, video, folder, done


@pytest.mark.slow
def test_video_file_and_frame_folder_give_csv_plot_and_annotated_video(clip):
    root, _, video, folder, done = clip
    scores = {}
    for name, source in (("clip", video), ("clip_frames", folder)):
        out = results_of(root, source)
        assert f"results in {out}" in done.stdout
        rows = read_csv(out / "frame_scores.csv")
        assert list(rows[0]) == ["frame", "time_s", "score", "normalised_score"]
        assert [int(r["frame"]) for r in rows] == list(range(60))
        times = np.array([float(r["time_s"]) for r in rows])
        assert np.all(np.diff(times) > 0) and np.allclose(times, np.arange(60) / 25)
        score = np.array([float(r["score"]) for r in rows])
        normalised = np.array([float(r["normalised_score"]) if r["normalised_score"] else np.nan for r in rows])
        has_box = score > -100000
        assert has_box.sum() > 50 and np.array_equal(np.isnan(normalised), ~has_box)  # empty exactly where no box
        assert np.nanmin(normalised) == 0 and np.nanmax(normalised) == 1
        # The fast box crossing frames 30-44 is what the model finds most unusual.
        assert 30 <= int(np.argmax(score)) < 45
        assert (out / "frame_scores.png").stat().st_size > 10_000
        assert read_back(out / "annotated.mp4") == (60, (HEIGHT, WIDTH), 25.0)
        assert not (out / "metrics.json").exists()  # no labels given
        assert json.loads((out / "video.json").read_text())["video"] == str(source)
        scores[name] = score
    # Same pixels (FFV1 is lossless) → same boxes, cubes and scores.
    np.testing.assert_allclose(scores["clip"], scores["clip_frames"], rtol=1e-6, atol=1e-6)
    frames_dir = root / "data" / "videos" / folder_key(video) / "frames" / folder_key(video)
    assert len(list(frames_dir.glob("*.png"))) == 60
    info = json.loads((frames_dir / "source.json").read_text())
    assert (info["n_frames"], info["width"], info["height"], info["fps"]) == (60, WIDTH, HEIGHT, 25.0)


@pytest.mark.slow
def test_labels_give_auroc_and_unchanged_sources_are_reused(clip):
    root, config, video, folder, _ = clip
    flow_file = next((root / "data" / "videos" / folder_key(video) / "optical_flow").rglob("*.npy"))
    flow_mtime = flow_file.stat().st_mtime_ns
    labels = np.zeros(60, dtype=np.int64)
    labels[30:45] = 1
    (root / "labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    np.save(root / "labels.npy", labels)
    done = run("test.py", config, "--video", video, folder, "--labels", root / "labels.txt", root / "labels.npy",
               "--fps", 10)
    assert done.returncode == 0, done.stderr[-3000:]
    key = folder_key(video)
    assert f"frames: reusing {root / 'data' / 'videos' / key / 'frames' / key}" in done.stdout
    assert flow_file.stat().st_mtime_ns == flow_mtime  # flow of unchanged frames is not recomputed
    for name, source in (("clip", video), ("clip_frames", folder)):
        metrics = json.loads((results_of(root, source) / "metrics.json").read_text())
        assert metrics["n_frames"] == 60 and metrics["n_anomalous_frames"] == 15
        assert metrics["auroc"] > 0.9, metrics
        assert f"frame-level AUROC on {name}: {metrics['auroc']:.4f}" in done.stdout
    # --fps sets the rate of a folder of frames; a file keeps its own.
    folder_rows = read_csv(results_of(root, folder) / "frame_scores.csv")
    assert float(folder_rows[1]["time_s"]) == pytest.approx(0.1)
    assert read_back(results_of(root, folder) / "annotated.mp4")[2] == 10.0
    assert float(read_csv(results_of(root, video) / "frame_scores.csv")[1]["time_s"]) == 0.04

    # A labels file with the wrong number of entries: one line naming it; the earlier results stay.
    (root / "short.txt").write_text("0\n" * 59)
    before = (results_of(root, video) / "frame_scores.csv").read_bytes()
    done = run("test.py", config, "--video", video, "--labels", root / "short.txt")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and str(root / "short.txt") in done.stderr
    assert "59 entries" in done.stderr and "60 frames" in done.stderr
    assert (results_of(root, video) / "frame_scores.csv").read_bytes() == before


# Runs a script as __main__ and, at exit, writes this process's own peak RSS (VmHWM) to argv[1].
# wait4's ru_maxrss is not used: Linux carries the parent's peak across fork and exec, so every
# child of a large pytest process would report at least pytest's own peak.
_REPORT_PEAK = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def report():
    with open('/proc/self/status') as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(out, 'w') as f:
        f.write(str(kib))
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _peak_rss_mib(folder, config, *args):
    """Peak resident memory (MiB) of one test.py run: that process's own high-water mark."""
    peak_file = folder / "peak_kib.txt"
    done = subprocess.run([sys.executable, "-c", _REPORT_PEAK, str(peak_file), str(REPO / "test.py"), "--config",
                           str(config), *map(str, args)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(peak_file.read_text()) / 1024, done.stdout


@pytest.mark.slow
def test_peak_memory_of_a_ten_times_longer_video_is_not_ten_times_higher(trained):
    root, config = trained
    short = write_video(root / "short.mp4", make_frames(60, seed=3), "mp4v")
    long = write_video(root / "long.mp4", make_frames(600, seed=3), "mp4v")
    peak_short, _ = _peak_rss_mib(root, config, "--video", short)
    peak_long, stdout = _peak_rss_mib(root, config, "--video", long)
    print(f"peak RSS: {peak_short:.0f} MiB for 60 frames, {peak_long:.0f} MiB for 600 frames "
          f"(ratio {peak_long / peak_short:.2f})")
    assert peak_long / peak_short < 2
    assert "long: 600 frames at 25 fps" in stdout
    assert len(read_csv(results_of(root, long) / "frame_scores.csv")) == 600
    assert read_back(results_of(root, long) / "annotated.mp4")[:2] == (600, (HEIGHT, WIDTH))


@pytest.mark.slow
def test_train_on_own_videos_then_score_with_that_model(tmp_path):
    config = write_config(tmp_path, nf=2, epochs=1)
    own = tmp_path / "my normal videos"  # a name with a space: the set is called my_normal_videos-<digest>
    own.mkdir()
    write_video(own / "walk.avi", make_frames(40, seed=11, anomaly=False), "MJPG")
    write_frame_folder(own / "street", make_frames(30, seed=12, anomaly=False), ".jpg")
    (own / ".DS_Store").write_text("hidden files are skipped")
    done = run("train.py", config, "--videos", own)
    assert done.returncode == 0, done.stderr[-3000:]
    key = folder_key(own)
    assert key.startswith("my_normal_videos-")
    model_dir = tmp_path / "data" / "video_sets" / key / "raw2flow"
    assert (model_dir / f"{key}_model_obj_det_with_motion_SelfComplete.npy").is_file()
    assert "from 70 frames of 2 videos" in done.stdout
    assert f"python test.py --video PATH --model {model_dir}" in done.stdout
    assert not (tmp_path / "raw_datasets").exists()  # no benchmark layout was needed
    frames = tmp_path / "data" / "video_sets" / key / "frames"
    assert sorted(p.name for p in frames.iterdir()) == sorted(folder_key(own / name) for name in ("street", "walk.avi"))

    clip = write_video(tmp_path / "clip.avi", make_frames(30, seed=13), "MJPG")
    done = run("test.py", config, "--video", clip, "--model", model_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model: {model_dir / (key + '_model_obj_det_with_motion_SelfComplete.npy')}" in done.stdout
    assert len(read_csv(results_of(tmp_path, clip) / "frame_scores.csv")) == 30


def _bad_inputs(tmp_path):
    """(arguments, text the one error line must hold) for each kind of bad input."""
    (tmp_path / "notes.txt").write_text("not a video\n")
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    (tmp_path / "empty").mkdir()
    write_video(tmp_path / "tiny.avi", make_frames(3), "MJPG")
    write_frame_folder(tmp_path / "seven", make_frames(7))
    (tmp_path / "five.txt").write_text("0\n1\n0\n1\n0\n")
    (tmp_path / "twos.txt").write_text("0 2 0 0 0 0 0\n")
    write_video(tmp_path / "fine.avi", make_frames(8), "MJPG")
    return {
        "not a video": (["--video", tmp_path / "notes.txt"], f"{tmp_path / 'notes.txt'} is neither a video"),
        "undecodable": (["--video", tmp_path / "broken.mp4"], f"{tmp_path / 'broken.mp4'} is neither a video"),
        "missing": (["--video", tmp_path / "nope.mp4"], f"{tmp_path / 'nope.mp4'} not found"),
        "no frames": (["--video", tmp_path / "empty"], f"{tmp_path / 'empty'} is a folder without frames"),
        "too short": (["--video", tmp_path / "tiny.avi"],
                      f"{tmp_path / 'tiny.avi'} has 3 frames; VEC needs at least 5"),
        "labels count": (["--video", tmp_path / "seven", "--labels", tmp_path / "five.txt"],
                         f"labels file {tmp_path / 'five.txt'} has 5 entries but {tmp_path / 'seven'} has 7 frames"),
        "labels values": (["--video", tmp_path / "seven", "--labels", tmp_path / "twos.txt"],
                          f"labels file {tmp_path / 'twos.txt'}: entry 1 is"),
        "labels per video": (["--video", tmp_path / "seven", tmp_path / "fine.avi", "--labels", tmp_path / "five.txt"],
                             "--labels got 1 files for 2 videos"),
        "no model": (["--video", tmp_path / "fine.avi"], "run `python train.py` first"),
        "model folder": (["--video", tmp_path / "fine.avi", "--model", tmp_path / "empty"],
                         f"--model {tmp_path / 'empty'} holds no trained model"),
        "options without --video": (["--fps", "10"],
                                    "--fps goes with --video or --calibrate"),
    }


@pytest.mark.parametrize("case", ["not a video", "undecodable", "missing", "no frames", "too short", "labels count",
                                  "labels values", "labels per video", "no model", "model folder",
                                  "options without --video"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    config = write_config(tmp_path)
    args, message = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run("test.py", config, *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert message in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no data/, results/ or raw_datasets/


def test_train_on_a_folder_with_a_file_that_is_not_a_video_names_it(tmp_path):
    config = write_config(tmp_path)
    own = tmp_path / "own"
    write_frame_folder(own / "cam", make_frames(6))
    (own / "readme.md").write_text("my videos\n")
    done = run("train.py", config, "--videos", own)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert f"{own / 'readme.md'} is neither a video" in done.stderr
    assert not (tmp_path / "data").exists()
