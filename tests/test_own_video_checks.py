"""`test.py --video` / `train.py --videos` never give a silent wrong answer: a cut video, an
impossible --fps, a killed run's leftovers, two sources called alike, a source replaced by
other bytes of the same size and age, two runs on one folder.

The scripts run in-process (`main(argv)` returns the exit status; output captured by
capsys) on tiny videos (a few dozen 72x96 frames) and a tiny model trained once per module
on one of them; a real second process only where only a process shows the thing (a lock
held by another process, a process killed with SIGKILL).
"""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import test as test_script
import train as train_script
from tests.conftest import REPO, textured_background, write_config, write_frame_folder, write_video
from utils.own_video.source import clean_name, folder_key

HEIGHT, WIDTH = 72, 96


def tiny_frames(n, seed=0, anomaly=True):
    """A textured background, a dark box walking right; with `anomaly`, a bright box racing across
    during frames n//2 … n//2+5."""
    rng = np.random.default_rng(seed)
    background = textured_background(rng, HEIGHT, WIDTH)
    for i in range(n):
        frame = background.copy()
        x = 4 + (i * 3) % (WIDTH - 24)
        cv2.rectangle(frame, (x, 30), (x + 14, 56), (40, 40, 60), -1)
        if anomaly and n // 2 <= i < n // 2 + 6:
            x = ((i - n // 2) * 14) % (WIDTH - 16)
            cv2.rectangle(frame, (x, 6), (x + 14, 20), (220, 220, 250), -1)
        yield frame




def call(capsys, script, config, *args):
    """(exit status, stdout, stderr) of `script.main` run in this process."""
    capsys.readouterr()
    status = script.main(["--config", str(config), *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error(status, err, *needles):
    assert status == 2, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for needle in needles:
        assert str(needle) in last, (needle, last)
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1, err
    return last


def on_disk(root, *folders):
    """Every path (hidden ones too) below root/<folder> for each folder, relative to root."""
    return sorted(str(p.relative_to(root)) for folder in folders for p in (root / folder).rglob("*")
                  if (root / folder).exists())


def read_scores(results):
    lines = (results / "frame_scores.csv").read_text().splitlines()[1:]
    return np.array([float(line.split(",")[2]) for line in lines])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(root, config, --model folder): a tiny model (nf 2, one epoch) trained with train.py --videos."""
    root = tmp_path_factory.mktemp("own")
    config = write_config(root, nf=2, epochs=1)
    write_video(root / "normal" / "walk.avi", tiny_frames(24, seed=11, anomaly=False))
    assert train_script.main(["--config", str(config), "--videos", str(root / "normal")]) == 0
    folder = root / "data" / "video_sets" / folder_key(root / "normal") / "raw2flow"
    assert len(list(folder.glob("*_model_*.npy"))) == 1
    return root, config, folder


@pytest.fixture
def workspace(model, tmp_path):
    """A fresh folder with its own data/ and results/, scoring with the module's model."""
    _, _, model_dir = model
    return tmp_path, write_config(tmp_path, nf=2, epochs=1), model_dir


def cut_in_half(video, out):
    out.parent.mkdir(parents=True, exist_ok=True)
    data = video.read_bytes()
    out.write_bytes(data[:len(data) // 2])
    return out


def decoded_count(video):
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


# ---- 1. a cut video --------------------------------------------------------------------------

@pytest.mark.slow
def test_cut_video_is_one_error_line_naming_both_counts_and_leaves_nothing(workspace, capsys):
    root, config, model_dir = workspace
    whole = write_video(root / "in" / "whole.avi", tiny_frames(20, seed=1))
    cut = cut_in_half(whole, root / "in" / "cut.avi")
    capture = cv2.VideoCapture(str(cut))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 20  # the trap: the header still says 20
    capture.release()
    n = decoded_count(cut)
    assert 5 <= n < 20
    status, _, err = call(capsys, test_script, config, "--video", cut, "--model", model_dir)
    assert_one_error(status, err, cut, f"{n} frames decode but its container declares 20", "--accept-short-video")
    assert on_disk(root, "data", "results") == []  # no frames, no lock, no empty folders


@pytest.mark.slow
def test_accepted_short_video_is_scored_and_recorded(workspace, capsys):
    root, config, model_dir = workspace
    cut = cut_in_half(write_video(root / "in" / "whole.avi", tiny_frames(20, seed=1)), root / "in" / "cut.avi")
    n = decoded_count(cut)
    status, out, err = call(capsys, test_script, config, "--video", cut, "--model", model_dir, "--accept-short-video")
    assert status == 0, err[-3000:]
    assert any(line.startswith("warning: ") and f"{n} of the 20 frames" in line for line in err.splitlines()), err
    key = folder_key(cut)
    results = root / "results" / "videos" / key
    recorded = json.loads((results / "video.json").read_text())
    assert (recorded["n_frames"], recorded["declared_frames"], recorded["short_video_accepted"]) == (n, 20, True)
    source = json.loads((root / "data" / "videos" / key / "frames" / key / "source.json").read_text())
    assert (source["n_frames"], source["declared_frames"], source["short"]) == (n, 20, True)
    assert len(read_scores(results)) == n and f"cut: {n} frames at 25 fps" in out

    # Without the flag the same frames are refused again; the accepted results stay as they were.
    before = (results / "frame_scores.csv").read_bytes()
    status, _, err = call(capsys, test_script, config, "--video", cut, "--model", model_dir)
    assert_one_error(status, err, f"{n} frames decode but its container declares 20")
    assert (results / "frame_scores.csv").read_bytes() == before


@pytest.mark.slow
def test_complete_video_records_no_shortness(workspace, capsys):
    root, config, model_dir = workspace
    whole = write_video(root / "in" / "whole.avi", tiny_frames(20, seed=1))
    status, _, err = call(capsys, test_script, config, "--video", whole, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert "warning" not in err
    recorded = json.loads((root / "results" / "videos" / folder_key(whole) / "video.json").read_text())
    assert (recorded["n_frames"], recorded["declared_frames"], recorded["short_video_accepted"]) == (20, 20, False)


def test_training_on_a_cut_video_is_refused_unless_accepted(tmp_path, capsys):
    config = write_config(tmp_path, nf=2, epochs=1)
    whole = write_video(tmp_path / "keep" / "whole.avi", tiny_frames(24, seed=2, anomaly=False))
    cut_in_half(whole, tmp_path / "normal" / "cut.avi")
    status, _, err = call(capsys, train_script, config, "--videos", tmp_path / "normal")
    assert_one_error(status, err, tmp_path / "normal" / "cut.avi", "container declares 24")
    assert on_disk(tmp_path, "data") == []
    status, out, err = call(capsys, train_script, config, "--videos", tmp_path / "normal", "--accept-short-video")
    assert status == 0, err[-3000:]
    assert f"accepted short videos (--accept-short-video): {tmp_path / 'normal' / 'cut.avi'}" in out


def test_accept_short_video_goes_with_video(tmp_path, capsys):
    config = write_config(tmp_path)
    assert_one_error(*call(capsys, test_script, config, "--accept-short-video")[::2], "--accept-short-video goes with --video")
    assert_one_error(*call(capsys, train_script, config, "--accept-short-video")[::2], "goes with --videos DIR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.cfg"]


# ---- 2. numbers on the command line, partial results -------------------------------------------

@pytest.mark.parametrize("fps", ["inf", "-inf", "nan", "0", "-5", "1e9", "0.001"])
def test_impossible_frame_rate_is_refused_before_any_work(tmp_path, capsys, fps):
    config = write_config(tmp_path)
    folder = write_frame_folder(tmp_path / "frames", tiny_frames(6), ".bmp")
    before = on_disk(tmp_path, ".")
    started = time.monotonic()
    status, _, err = call(capsys, test_script, config, "--video", folder, f"--fps={fps}")
    assert_one_error(status, err, f"--fps {float(fps)} is not a frame rate", "from 0.01 to 1000")
    assert time.monotonic() - started < 30  # refused, not spinning
    assert on_disk(tmp_path, ".") == before


def test_frame_rate_of_a_folder_sets_the_times(workspace, capsys):
    root, config, model_dir = workspace
    folder = write_frame_folder(root / "in" / "frames", tiny_frames(8), ".bmp")
    status, _, err = call(capsys, test_script, config, "--video", folder, "--model", model_dir, "--fps", "0.5")
    assert status == 0, err[-3000:]
    results = root / "results" / "videos" / folder_key(folder)
    times = [float(line.split(",")[1]) for line in (results / "frame_scores.csv").read_text().splitlines()[1:]]
    assert times[:3] == [0.0, 2.0, 4.0]


KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from utils.infra.io import atomic_dir
with atomic_dir(Path(sys.argv[1])) as partial:
    (partial / "frame_scores.csv").write_text("frame,time_s,score,normalised_score\\n0,0.0,1.0,1.0\\n")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_that_looks_like_a_result(workspace, capsys):
    root, config, model_dir = workspace
    video = write_video(root / "in" / "clip.avi", tiny_frames(8))
    results = root / "results" / "videos" / folder_key(video)
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(results), str(REPO)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = list(results.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f".{results.name}.") and left[0].name.endswith(".partial")
    assert (left[0] / "frame_scores.csv").is_file()  # what was written is there, under a hidden name
    assert not results.exists()

    status, _, err = call(capsys, test_script, config, "--video", video, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert [p.name for p in results.parent.iterdir()] == [results.name]  # the dead run's folder is gone
    assert sorted(p.name for p in results.iterdir()) == ["annotated.mp4", "frame_scores.csv", "frame_scores.png",
                                                          "video.json"]
    assert len(read_scores(results)) == 8


# ---- 3. two sources called alike --------------------------------------------------------------

@pytest.mark.slow
def test_two_clips_of_one_name_get_their_own_folders(workspace, capsys):
    root, config, model_dir = workspace
    first = write_video(root / "a" / "clip.avi", tiny_frames(8, seed=1))
    second = write_video(root / "b" / "clip.avi", tiny_frames(10, seed=2))
    status, out, err = call(capsys, test_script, config, "--video", first, "--model", model_dir)
    assert status == 0, err[-3000:]
    kept = (root / "results" / "videos" / folder_key(first) / "frame_scores.csv").read_bytes()
    status, out, err = call(capsys, test_script, config, "--video", second, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert folder_key(first) != folder_key(second) and folder_key(first).startswith("clip-")
    assert f"results in {root / 'results' / 'videos' / folder_key(second)}" in out
    assert (root / "results" / "videos" / folder_key(first) / "frame_scores.csv").read_bytes() == kept
    assert len(read_scores(root / "results" / "videos" / folder_key(second))) == 10
    assert sorted(p.name for p in (root / "data" / "videos").iterdir()) == sorted([folder_key(first),
                                                                                   folder_key(second)])
    for video in (first, second):
        assert json.loads((root / "results" / "videos" / folder_key(video) / "video.json").read_text())["video"] \
            == str(video)


def test_unicode_names_keep_their_letters(workspace, capsys):
    root, config, model_dir = workspace
    video = write_video(root / "in" / "straße clip ü.avi", tiny_frames(8))
    status, out, err = call(capsys, test_script, config, "--video", video, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert folder_key(video).startswith("straße_clip_ü-")
    assert (root / "results" / "videos" / folder_key(video) / "frame_scores.csv").is_file()
    assert "straße_clip_ü: 8 frames" in out


def test_clean_name():
    from pathlib import Path
    assert clean_name(Path("straße clip ü.avi")) == "straße_clip_ü"
    assert clean_name(Path("e\u0301te\u0301.mp4")) == "\u00e9t\u00e9"  # NFD (macOS) → NFC
    assert clean_name(Path("T<img src=x onerror=alert(1)>.avi")) == "T_img_src_x_onerror_alert_1"
    assert clean_name(Path("...avi")) == "video"
    long = clean_name(Path("ü" * 300 + ".avi"))
    assert long == "ü" * 50 and len(long.encode()) == 100


def test_the_same_video_twice_in_one_call_is_refused(workspace, capsys):
    root, config, model_dir = workspace
    video = write_video(root / "in" / "clip.avi", tiny_frames(8))
    status, _, err = call(capsys, test_script, config, "--video", video, root / "in" / "." / "clip.avi",
                          "--model", model_dir)
    assert_one_error(status, err, f"{video} is given twice")
    assert on_disk(root, "data", "results") == []


# ---- 4. content, not size and age, decides reuse ------------------------------------------------

def _replace_keeping_size_and_age(path, new_bytes):
    stat = path.stat()
    assert len(new_bytes) == stat.st_size
    path.write_bytes(new_bytes)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_source_replaced_by_other_bytes_of_the_same_size_and_age_is_decoded_again(workspace, capsys, kind):
    root, config, model_dir = workspace
    if kind == "file":  # uncompressed I420: the same size whatever the pixels
        source = write_video(root / "in" / "clip.avi", tiny_frames(8, seed=1), "I420")
        other = write_video(root / "other" / "clip.avi", tiny_frames(8, seed=5), "I420")
        replace = [(source, other.read_bytes())]
    else:  # BMP frames: the same size whatever the pixels
        source = write_frame_folder(root / "in" / "frames", tiny_frames(8, seed=1), ".bmp")
        other = write_frame_folder(root / "other" / "frames", tiny_frames(8, seed=5), ".bmp")
        replace = [(source / "img_0003.bmp", (other / "img_0003.bmp").read_bytes())]
    key = folder_key(source)
    status, out, err = call(capsys, test_script, config, "--video", source, "--model", model_dir)
    assert status == 0, err[-3000:]
    frames = root / "data" / "videos" / key / "frames" / key
    first_frames = {p.name: p.read_bytes() for p in frames.glob("*.png")}
    first_identity = json.loads((frames / "source.json").read_text())["source"]

    if kind == "file":  # unchanged: reused (the folder variant skips this run to stay fast)
        status, out, err = call(capsys, test_script, config, "--video", source, "--model", model_dir)
        assert status == 0 and "frames: reusing" in out

    for path, data in replace:
        _replace_keeping_size_and_age(path, data)
    status, out, err = call(capsys, test_script, config, "--video", source, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert "frames: reusing" not in out
    results = root / "results" / "videos" / key
    assert f"{results}: replacing the results of an earlier version of {source} (other content, SHA-256 " \
           f"{first_identity['sha256'][:12]}…)" in out
    identity = json.loads((frames / "source.json").read_text())["source"]
    assert identity["path"] == first_identity["path"] and identity["sha256"] != first_identity["sha256"]
    changed = [name for name, data in first_frames.items() if (frames / name).read_bytes() != data]
    assert changed and (kind == "file" or changed == ["00000003.png"])
    derived = json.loads((root / "data" / "videos" / key / "derived.json").read_text())
    assert derived["frames"][key] == identity  # flow, boxes and cubes were made from the new bytes


# ---- 6. one run at a time per work folder ---------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from utils.infra.run_lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_names_the_first_and_a_killed_one_does_not_block(workspace, capsys):
    root, config, model_dir = workspace
    video = write_video(root / "in" / "clip.avi", tiny_frames(8))
    key = folder_key(video)
    lock = root / "data" / "videos" / key / f".{key}.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), str(REPO)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        status, _, err = call(capsys, test_script, config, "--video", video, "--model", model_dir)
        assert_one_error(status, err, f"{lock.parent} is in use by another run (pid {holder.pid}, since ",
                         "wait for it to finish")
        assert sorted(p.name for p in lock.parent.iterdir()) == [lock.name]  # nothing written beside it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert lock.is_file()  # the killed run's lock file is still there: it must not block
    status, _, err = call(capsys, test_script, config, "--video", video, "--model", model_dir)
    assert status == 0, err[-3000:]
    assert not lock.exists() and len(read_scores(root / "results" / "videos" / key)) == 8


@pytest.mark.slow
def test_training_on_a_busy_set_names_the_first_run(model, tmp_path, capsys):
    config = write_config(tmp_path, nf=2, epochs=1)
    write_video(tmp_path / "normal" / "walk.avi", tiny_frames(8, anomaly=False))
    key = folder_key(tmp_path / "normal")
    lock = tmp_path / "data" / "video_sets" / key / f".{key}.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), str(REPO)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        status, _, err = call(capsys, train_script, config, "--videos", tmp_path / "normal")
        assert_one_error(status, err, f"is in use by another run (pid {holder.pid}, since ")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert on_disk(tmp_path, "data") == [str(p.relative_to(tmp_path)) for p in (lock.parent.parent, lock.parent, lock)]
