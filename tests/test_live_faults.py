"""`test.py --live` and `--calibrate` against hostile cameras and damaged files: a bounded run, one
clear line, no traceback, nothing misleading left on disk.

The cameras are support/mjpeg_server.py on 127.0.0.1 serving crafted JPEGs (broken, cut in
half, changing size, huge); the model is tests/test_live.py's tiny one on the synthetic scene.
"""
import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import test as vec_test
from support.mjpeg_server import PacedMJPEGServer, encode_jpegs
from tests.test_live import trained  # noqa: F401  (the module's model and clips)
from utils.infra.io import sha256_file
from utils.live.calibrate import MIN_FRAMES_WITH_BOXES, calibration_path
from utils.live.source import BROKEN_IN_A_ROW, MAX_FRAME_PIXELS, decode_jpeg, mask_credentials, parse_source
from utils.own_video.source import NAME_BYTES


def _run(capsys, config, *args):
    """`test.py --config CONFIG ARGS` in-process: (exit status, stdout lines, stderr)."""
    status = vec_test.main(["--config", str(config), *(str(a) for a in args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return status, captured.out.splitlines(), captured.err


def _folder(lines):
    found = re.fullmatch(r"results in (\S+): scores\.csv.*", lines[-1])
    assert found, lines
    return Path(found.group(1))


def _live_folders(root):
    return sorted((root / "results" / "live").glob("*"))


def _frames(jpegs):
    return [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]


# ---- credentials ------------------------------------------------------------------------------

def test_passwords_and_tokens_in_a_url_are_masked():
    assert mask_credentials("http://10.0.0.5/videostream.cgi?user=admin&pwd=S3cret") == \
        "http://10.0.0.5/videostream.cgi?user=admin&pwd=***"
    assert mask_credentials("rtsp://admin:pa:ss@cam:554/s?channel=1&access_token=abc;Password=x&api_key=k") == \
        "rtsp://admin:***@cam:554/s?channel=1&access_token=***;Password=***&api_key=***"
    assert mask_credentials("http://user@cam/video.mjpg?auth=") == "http://user@cam/video.mjpg?auth="
    assert mask_credentials("0") == "0" and mask_credentials("clip_pwd=1.mp4") == "clip_pwd=1.mp4"
    assert parse_source("http://cam/a.cgi?pass=hunter2").shown == "http://cam/a.cgi?pass=***"


@pytest.mark.slow
def test_a_password_in_the_query_is_never_printed_nor_stored(trained, capsys):  # noqa: F811
    root, config, clips = trained
    with PacedMJPEGServer(clips["normal"][:8], 25) as server:
        url = server.url + "?user=admin&pwd=S3cret"
        status, lines, err = _run(capsys, config, "--live", url, "--retries", 0, "--threshold", 1e9)
    assert status == 0, lines
    folder = _folder(lines)
    assert f"watching {server.url}?user=admin&pwd=***; results in {folder}" in lines
    assert "S3cret" not in "\n".join(lines) + err
    assert all("S3cret" not in p.read_text(errors="replace") for p in folder.iterdir())
    assert json.loads((folder / "run.json").read_text())["source"].endswith("pwd=***")


# ---- a camera that never gives a usable frame -------------------------------------------------

@pytest.mark.slow
def test_a_camera_of_broken_frames_that_accepts_every_reconnect_ends_within_the_retries(trained, capsys):  # noqa: F811
    root, config, _ = trained
    noise = b"\xff\xd8" + np.random.default_rng(0).integers(0, 255, 3000, np.uint8).tobytes() + b"\xff\xd9"
    before = _live_folders(root)
    with PacedMJPEGServer([noise], 100, loop=True) as server:  # serves for ever, to every connection
        started = time.monotonic()
        status, lines, err = _run(capsys, config, "--live", server.url, "--retries", 1)
        took = time.monotonic() - started
        connections = server.connections
    assert status == 2 and took < 30, (took, lines)
    assert connections == 2  # the first open and one reopening try, not one per broken stretch
    assert sum(f"{BROKEN_IN_A_ROW} broken JPEGs in a row" in line for line in lines) == 2, lines
    assert any(line.endswith("gave no usable frame since it was reopened (1 try); stopping") for line in lines)
    assert err.count("\n") == 1 and re.fullmatch(
        rf"error: {re.escape(server.url)} gave no usable frame: all \d+ JPEGs it sent were cut short or not "
        r"decodable; check the camera's stream settings \(or its network\)\n", err), err
    assert _live_folders(root) == before


# ---- damaged JPEGs, changing and huge frames -------------------------------------------------

def test_a_jpeg_cut_short_is_refused_not_filled_in(trained):  # noqa: F811
    jpeg = trained[2]["normal"][0]
    assert decode_jpeg(jpeg).shape == (160, 240, 3)
    assert decode_jpeg(jpeg + b"\r\n").shape == (160, 240, 3)  # a part's padding is no damage
    for damaged in (jpeg[:len(jpeg) // 2], jpeg[:-2], jpeg[2:], b""):
        assert decode_jpeg(damaged) is None


@pytest.mark.slow
def test_every_tenth_jpeg_cut_in_half_is_skipped_counted_and_reported(trained, capsys):  # noqa: F811
    root, config, clips = trained
    jpegs = [j[:len(j) // 2] if i % 10 == 9 else j for i, j in enumerate(clips["normal"])]  # frames 9 and 19
    with PacedMJPEGServer(jpegs, 10) as server:
        status, lines, err = _run(capsys, config, "--live", server.url, "--retries", 0, "--threshold", 1e9)
    assert status == 0, lines
    assert re.fullmatch(r"stopped, the stream stopped and was not reopened: 22 frames in, .*; 0 alarm\(s\); "
                        r"2 broken frame\(s\) skipped \(cut short or not decodable\)", lines[-2]), lines
    summary = json.loads((_folder(lines) / "run.json").read_text())["summary"]
    assert summary["broken_skipped"] == 2 and summary["frames_in"] == 22 and summary["segments"] == 1


@pytest.mark.slow
def test_a_change_of_frame_size_starts_a_new_segment_with_one_line(trained, capsys):  # noqa: F811
    root, config, clips = trained
    frames = _frames(clips["normal"][:16])
    jpegs = encode_jpegs(frames[:8]) + encode_jpegs([cv2.resize(f, (320, 200)) for f in frames[8:]])
    with PacedMJPEGServer(jpegs, 10) as server:
        status, lines, err = _run(capsys, config, "--live", server.url, "--retries", 0, "--threshold", 1e9)
    assert status == 0, lines
    assert [line for line in lines if "frame size" in line] == \
        ["the frame size changed from 240x160 to 320x200 at frame 8: a new segment starts"]
    summary = json.loads((_folder(lines) / "run.json").read_text())["summary"]
    assert summary["segments"] == 2 and summary["frames_in"] == 16


@pytest.mark.slow
def test_a_huge_frame_is_downscaled_and_said_once(trained, capsys):  # noqa: F811
    root, config, clips = trained
    huge = encode_jpegs([cv2.resize(_frames(clips["normal"][:1])[0], (6000, 4000))], quality=50)
    with PacedMJPEGServer(huge * 3, 5) as server:
        status, lines, err = _run(capsys, config, "--live", server.url, "--retries", 0, "--threshold", 1e9)
    assert status == 0, lines
    said = [line for line in lines if "downscaled" in line]
    assert said == [f"frames of 6000x4000 are scored downscaled to 1763x1175 (at most {MAX_FRAME_PIXELS} pixels: "
                    "VEC needs no more, and larger frames take seconds and gigabytes), from frame 0"], lines
    summary = json.loads((_folder(lines) / "run.json").read_text())["summary"]
    assert summary["frames_in"] == 3 and summary["peak_frames_held"] <= 3


# ---- long names ---------------------------------------------------------------------------

@pytest.mark.slow
def test_long_url_paths_and_file_names_give_valid_results_folders(trained, capsys, tmp_path):  # noqa: F811
    root, config, clips = trained
    with PacedMJPEGServer(clips["normal"][:6], 25) as server:
        status, lines, _ = _run(capsys, config, "--live", server.url + "/" + "a" * 300, "--retries", 0,
                                "--threshold", 1e9)
    assert status == 0, lines
    assert len(_folder(lines).name) < NAME_BYTES + 30 and (_folder(lines) / "run.json").is_file()
    long_file = tmp_path / ("v" * 239 + ".mjpeg")  # 245 characters
    long_file.write_bytes(b"".join(clips["normal"][:6]))
    status, lines, _ = _run(capsys, config, "--live", long_file, "--threshold", 1e9)
    assert status == 0, lines
    folder = _folder(lines)
    assert folder.name.startswith("v" * NAME_BYTES + "-") and len(folder.name) < NAME_BYTES + 30
    assert json.loads((folder / "run.json").read_text())["summary"]["frames_in"] == 6


# ---- the threshold file and calibration ---------------------------------------------------

@pytest.mark.parametrize("value", [True, "1.5e2", None, [150]])
def test_a_threshold_file_without_a_number_is_one_line_exit_2(trained, capsys, value):  # noqa: F811
    root, config, _ = trained
    model = next((root / "data" / "raw2flow").glob("*.npy"))
    path = calibration_path(model)
    assert not path.exists()
    path.write_text(json.dumps({"threshold": value, "false_alarms_per_hour": 1, "calibrated_on": [{"path": "n.mp4"}],
                                "model": {"path": str(model), "sha256": sha256_file(model)}}))
    before = _live_folders(root)
    try:
        status, lines, err = _run(capsys, config, "--live", root / "normal.mjpeg")
    finally:
        path.unlink()
    assert status == 2
    assert err == (f"error: the threshold file {path} holds threshold {json.dumps(value)}, not a finite number; "
                   "delete it and rerun `python test.py --calibrate NORMAL_VIDEO` or pass --threshold T\n")
    assert _live_folders(root) == before


def test_calibrating_on_footage_with_too_few_boxes_stores_nothing(trained, capsys, tmp_path):  # noqa: F811
    root, config, _ = trained
    footage = tmp_path / "still"
    footage.mkdir()
    scene = np.random.default_rng(1).integers(90, 110, (32, 48, 3), np.uint8)
    for i in range(60):  # a still 48x32 scene; something shows up in one frame only
        frame = scene.copy()
        if i == 30:
            frame[8:24, 16:32] = 255
        cv2.imwrite(str(footage / f"{i:03d}.png"), frame)
    model = next((root / "data" / "raw2flow").glob("*.npy"))
    status, lines, err = _run(capsys, config, "--calibrate", footage)
    assert status == 2
    err = err.rstrip("\n").split("\n")[-1]  # after the progress bar
    assert "Traceback" not in err and re.fullmatch(rf"error: only (\d+) of the 60 frames of {re.escape(str(footage))} have a box \(VEC scores "
                        rf"only frames where something moves\); calibrating needs at least {MIN_FRAMES_WITH_BOXES}: "
                        r"use longer footage, or more videos, of the scene's usual activity", err), err
    assert int(re.search(r"only (\d+)", err).group(1)) < MIN_FRAMES_WITH_BOXES
    assert not calibration_path(model).exists()
