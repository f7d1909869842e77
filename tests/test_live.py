"""`test.py --live SOURCE` and `--calibrate`: a paced MJPEG camera on 127.0.0.1, the real pipeline.

A tiny model (nf 2, one epoch) is trained on the small synthetic dataset; the clips are
an unseen normal video of the same scene and that video with an injected anomaly. The
server (support/mjpeg_server.py) sends JPEGs; the offline reference is `test.py --video`
on a raw MJPEG file of the very same JPEGs, which FFmpeg decodes with the same decoder as
the stream, so both see the same pixels. The paces are set from the speed measured on this
machine (the calibration scores every frame), so "slow" leaves the scorer time for every
frame and "fast" makes it skip frames, on a fast or a loaded machine alike.
"""
import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import test as vec_test
import train
from support.mjpeg_server import PacedMJPEGServer, encode_jpegs
from tests.conftest import write_config
from utils.datasets import context_range, generate_synthetic
from utils.infra.errors import VECError
from utils.flow import flow_pair
from utils.live.alarms import AlarmTracker, count_events
from utils.live.calibrate import choose_threshold
from utils.live.context import Segment
from utils.live.ring import Arrival, StreamEnded, StreamRing
from utils.live.ring import RING_FRAMES
from utils.own_video.source import folder_key
from utils.live.source import parse_source
from utils.live.status import Terminal

ANOMALY = (9, 13)  # frames of the anomaly clip with the injected object
STRIDE_LINE = re.compile(r"scoring (?:every frame|1 frame in (\d+)): .* from frame (\d+)\)")


# ---- the window rules and the ring, without a stream ------------------------------------------

class _WholeVideo:
    """A one-video split as the offline pipeline sees it: context_range over every frame."""

    def __init__(self, length):
        self.video_of = [1] * length

    def context(self, i, n, border_mode):
        return context_range(self.video_of, i, n, border_mode)


def test_stream_windows_give_the_whole_videos_contexts_and_flow_pairs():
    for length in range(1, 30):
        whole, ended = _WholeVideo(length), Segment(length)
        for i in range(length):
            for n, mode in ((4, "predict"), (0, "predict"), (1, "hard")):
                assert ended.context(i, n, mode) == whole.context(i, n, mode)
                if i + 1 < length:  # frame i+1 has arrived, the end is not known yet
                    assert Segment(None).context(i, n, mode) == whole.context(i, n, mode)
            assert ended.flow_pair(i) == flow_pair(whole, i)


def _arrivals(n, segment=0):
    return [Arrival(segment, i, i, float(i), np.full((2, 2, 3), i, np.uint8)) for i in range(n)]


def test_ring_keeps_only_the_windows_of_frames_to_score_and_drops_when_behind():
    ring = StreamRing(capacity=12, lookback=4)
    ring.set_stride(8)
    for arrival in _arrivals(9):
        ring.put(arrival)
    assert sorted(j for _, j in ring.slots) == [0, 1, 4, 5, 6, 7, 8]  # windows of 0 and 8; 2, 3 let go
    target = ring.take(timeout=0)
    assert target.arrival.index == 0 and sorted(target.frames) == [0, 1]
    for arrival in _arrivals(200)[9:]:  # nobody scores: the oldest frames to score are given up
        ring.put(arrival)
        assert len(ring.slots) <= 12
    assert ring.dropped > 0 and ring.peak_held <= 12
    target = ring.take(timeout=0)
    t = target.arrival.index
    assert t % 8 == 0 and sorted(target.frames) == list(range(t - 4, t + 2))
    ring.end_segment(0, 200)
    ring.close()
    taken = [ring.take(timeout=0).arrival.index for _ in range((199 - t) // 8)]
    assert taken == list(range(t + 8, 200, 8))
    with pytest.raises(StreamEnded):
        ring.take(timeout=0)


def test_a_late_scorer_skips_to_the_newest_frames_keeping_the_stride():
    ring = StreamRing(capacity=24, lookback=4, max_waiting=2)
    ring.set_stride(3)
    for arrival in _arrivals(20):  # planned: 0, 3, 6, …; complete up to 18 (frame 19 has arrived)
        ring.put(arrival)
    assert [ring.take(timeout=0).arrival.index for _ in range(2)] == [15, 18]
    assert ring.dropped == 5 and ring.take(timeout=0) is None
    assert ring.dropped_late == 5  # frames arrive 1 s apart here: every drop came after the first second


def test_a_new_segment_never_reaches_into_the_old_one():
    ring = StreamRing(capacity=24, lookback=4)
    for arrival in _arrivals(3) + _arrivals(3, segment=1):
        ring.put(arrival)
    ring.end_segment(0, 3)
    windows = [(t.arrival.segment, t.arrival.index, sorted(t.frames), t.length) for t in
               iter(lambda: ring.take(timeout=0), None)]
    assert windows == [(0, 0, [0, 1], 3), (0, 1, [0, 1, 2], 3), (0, 2, [0, 1, 2], 3), (1, 0, [0, 1], None),
                       (1, 1, [0, 1, 2], None)]


def test_sources_are_told_apart_and_a_password_is_never_shown(tmp_path):
    camera, stream, plain = (parse_source(text) for text in ("1", "rtsp://admin:s3cret@10.0.0.7:554/live/ch0",
                                                             "http://cam.local/video.mjpg"))
    assert (camera.kind, camera.target, camera.name) == ("camera", 1, "camera1")
    assert (stream.kind, stream.target, stream.name) == ("stream", "rtsp://admin:s3cret@10.0.0.7:554/live/ch0",
                                                        "10.0.0.7_554_ch0")
    assert stream.shown == "rtsp://admin:***@10.0.0.7:554/live/ch0" and plain.shown == "http://cam.local/video.mjpg"
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert parse_source(str(tmp_path / "clip.mp4")).kind == "file"
    with pytest.raises(VECError, match="is a folder"):
        parse_source(str(tmp_path))


def test_the_status_line_stays_below_the_lines_and_is_cleared_at_the_end():
    out, status = io.StringIO(), io.StringIO()
    terminal = Terminal(out, status, show_status=True)
    terminal.status("frames in 10 | scored 5", force=True)
    terminal.say("alarm 1: …")
    terminal.close()
    assert out.getvalue() == "alarm 1: …\n"
    assert status.getvalue() == "\r\033[Kframes in 10 | scored 5" + "\r\033[K" + "\r\033[Kframes in 10 | scored 5" + "\r\033[K"
    quiet = io.StringIO()
    Terminal(io.StringIO(), quiet, show_status=False).status("x", force=True)
    assert quiet.getvalue() == ""


def test_alarm_tracker_and_calibration_count_alike():
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1, 500)
    scores[rng.choice(500, 40)] = -100000.0  # frames without a box
    times = np.cumsum(rng.uniform(0.05, 1.0, 500))
    for threshold in (0.5, 1.5, 2.5):
        tracker = AlarmTracker(threshold, min_gap=1.0)
        ended = [e for e in (tracker.update(i, t, s)[0] for i, (t, s) in enumerate(zip(times, scores))) if e]
        ended += [tracker.finish()] if tracker.open else []
        assert len(ended) == count_events(scores, times, threshold, 1.0) == tracker.count
        assert all(e.start_frame <= e.peak_frame <= e.end_frame and e.peak_score > threshold for e in ended)
    slow = AlarmTracker(1.0, min_gap=1.0)  # frames 5 s apart, all above: one alarm; one below in between: two
    assert [slow.update(i, 5.0 * i, 2.0)[0] for i in range(3)] == [None] * 3 and slow.count == 1
    assert slow.update(3, 15.5, 0.0)[0].end_frame == 2 and slow.update(4, 16.0, 2.0) == (None, True)
    assert slow.count == 2
    assert count_events(np.array([2.0, 2.0, 2.0, 0.0, 2.0]), np.array([0.0, 5, 10, 15.5, 16]), 1.0, 1.0) == 2
    for allowed in (0, 3, 10):
        threshold, events = choose_threshold(scores, times, 1.0, allowed)
        assert events <= allowed and not np.any(np.isclose(scores, threshold))
        below = np.unique(scores[(scores > -100000) & (scores < threshold)])
        assert count_events(scores, times, below[-1], 1.0) == events  # halfway above a level: its count
        assert len(below) > 1 and count_events(scores, times, below[-2], 1.0) > allowed  # the level below: too many


# ---- the real thing -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(small_synthetic, tmp_path_factory):
    """A config whose model (nf 2, one epoch) was trained on the small synthetic set, and the clips."""
    root = tmp_path_factory.mktemp("live")
    for folder in (small_synthetic.raw_dataset_dir, small_synthetic.optical_flow_dir):  # one training video
        train_video = folder / "synthetic" / "Train" / "Train001"
        shutil.copytree(train_video, root / train_video.relative_to(folder.parent))
    (root / "raw_datasets" / "synthetic" / ".complete").write_text((small_synthetic.dataset_dir / ".complete").read_text())
    config = write_config(root, nf=2, epochs=1)
    assert train.main(["--config", str(config)]) == 0
    # The same generator, seed and length as small_synthetic with one more training video: the same
    # scene, a normal video the model has not seen.
    generate_synthetic(root / "clips", seed=1, n_train=4, n_test=0, n_frames=24, progress=False)
    normal = [cv2.imread(str(p)) for p in sorted((root / "clips" / "Train" / "Train004").glob("*.tif"))]
    anomaly = [frame.copy() for frame in normal[:20]]
    for i in range(ANOMALY[0], ANOMALY[1] + 1):  # a bright block racing across the walkway
        x = 10 + (i - ANOMALY[0]) * 30
        cv2.rectangle(anomaly[i], (x, 60), (x + 24, 90), (250, 250, 250), -1)
    clips = {"normal": encode_jpegs(normal), "anomaly": encode_jpegs(anomaly)}
    clips["fast"] = clips["normal"] + clips["normal"][::-1][1:] + clips["normal"][1:]  # there, back and there
    clips["head"], clips["tail"] = clips["anomaly"][:8], clips["anomaly"][8:]
    for name, jpegs in clips.items():  # raw MJPEG files: FFmpeg decodes them as it decodes the stream
        (root / f"{name}.mjpeg").write_bytes(b"".join(jpegs))
    return root, config, clips


@pytest.fixture(scope="module")
def offline(trained):
    """`test.py --video` scores of every clip, by name."""
    root, config, clips = trained
    status, out = _script("--config", config, "--video", *(root / f"{name}.mjpeg" for name in clips))
    assert status == 0, out
    return {name: np.array([float(r["score"]) for r in
                            _rows(root / "results" / "videos" / folder_key(root / f"{name}.mjpeg") / "frame_scores.csv")])
            for name in clips}


@pytest.fixture(scope="module")
def calibration(trained):
    """`--calibrate normal.mjpeg`: its threshold file's record (with the seconds a frame takes here)."""
    root, config, clips = trained
    status, out = _script("--config", config, "--calibrate", root / "normal.mjpeg")
    assert status == 0, out
    return json.loads(next((root / "data" / "raw2flow").glob("*.threshold.json")).read_text())


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _script(*args):
    """`test.py ARGS` in-process; (exit status, what it printed on stdout)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the reader thread's lines too: they go to sys.stdout
        status = vec_test.main([str(a) for a in args])
    return status, printed.getvalue()


def _live(config, source, *args):
    """`test.py --live SOURCE ARGS`; (exit status, stdout, results folder, scores.csv rows, run.json)."""
    status, out = _script("--config", config, "--live", source, *args)
    found = re.search(r"results in (\S+): scores\.csv", out)
    if found is None:
        return status, out, None, None, None
    folder = Path(found.group(1))
    return status, out, folder, _rows(folder / "scores.csv"), json.loads((folder / "run.json").read_text())


@pytest.fixture(scope="module")
def slow_run(trained, calibration):
    """The anomaly clip served slowly enough (a third of this machine's speed) to score every frame,
    with the calibrated threshold."""
    root, config, clips = trained
    fps = min(10.0, max(0.5, 1 / (3 * calibration["score_seconds_median"])))
    with PacedMJPEGServer(clips["anomaly"], fps) as server:
        done = _live(config, server.url, "--retries", 0, "--min-gap", 3 / fps)
    assert done[0] == 0, done[1]
    return done


def _scored(rows):
    return {int(r["frame"]): float(r["score"]) for r in rows}


@pytest.mark.slow
def test_slow_pace_scores_every_frame_as_test_video_does(slow_run, offline):
    status, out, folder, rows, run = slow_run
    scores = _scored(rows)
    assert sorted(scores) == list(range(20)), out
    np.testing.assert_allclose([scores[i] for i in range(20)], offline["anomaly"], rtol=1e-5, atol=1e-5)
    arrivals, delays = (np.array([float(r[key]) for r in rows]) for key in ("arrival_s", "delay_s"))
    assert np.all(np.diff(arrivals) > 0) and np.all(delays > 0)
    summary = run["summary"]
    assert summary["frames_in"] == summary["scored"] == 20 and summary["dropped"] == summary["dropped_after_first_second"] == 0
    assert 0 < summary["delay_median_s"] <= summary["delay_p95_s"] < 60
    assert "delay median" in out and "95th percentile" in out


@pytest.mark.slow
def test_an_injected_anomaly_raises_one_alarm_covering_it(slow_run, offline):
    status, out, folder, rows, run = slow_run
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1, out
    event = events[0]
    assert event["start_frame"] <= ANOMALY[0] + 1 and event["end_frame"] >= ANOMALY[1]
    assert ANOMALY[0] - 2 <= event["start_frame"] and event["end_frame"] <= ANOMALY[1] + 6
    assert event["peak_frame"] == int(np.argmax(offline["anomaly"]))
    assert event["peak_score"] == pytest.approx(offline["anomaly"].max(), rel=1e-5)
    assert not (folder / "alarm_in_progress.json").exists()  # written while it lasted, gone once it ended
    image = cv2.imread(str(folder / event["image"]))
    assert image is not None and image.shape == (160, 240, 3)
    assert len([line for line in out.splitlines() if line.startswith("alarm ")]) == 1
    assert run["threshold_from"].startswith("calibrated on normal.mjpeg")


@pytest.mark.slow
def test_calibrated_threshold_raises_no_alarm_on_the_normal_frames(trained, calibration, offline):
    root, config, clips = trained
    record = calibration
    assert record["events_at_threshold"] == 0 and record["frames"] == len(clips["normal"])
    assert np.all(offline["normal"] < record["threshold"])  # no frame of it, whichever are scored live
    assert record["calibrated_on"][0]["path"].endswith("normal.mjpeg")
    status, out, folder, rows, run = _live(config, root / "normal.mjpeg", "--min-gap", 1)  # at its own 25 frames/s
    assert status == 0, out
    assert run["threshold"] == record["threshold"] and run["summary"]["events"] == 0
    assert (folder / "events.jsonl").read_text() == "" and not list(folder.glob("*.jpg"))
    assert rows and all(float(r["score"]) < record["threshold"] for r in rows)


@pytest.fixture(scope="module")
def fast_run(trained, slow_run):
    """The normal clip there, back and there again (70 frames), served 1.5 times as fast as the slower of
    the two overlapped stages (preparing a frame, its networks) takes here: a stride of about 2 to 8, from
    how the time splits between flow and the rest."""
    root, config, clips = trained
    stages = slow_run[4]["summary"]["stage_seconds_median"]
    slower = max(stages["flow"] + stages["boxes"] + stages["cubes"], stages["networks"])
    fps = min(150.0, max(5.0, 1.5 / slower))
    with PacedMJPEGServer(clips["fast"], fps) as server:
        done = _live(config, server.url, "--retries", 0)
    assert done[0] == 0, done[1]
    return done


@pytest.mark.slow
def test_fast_pace_gives_a_steady_stride_bounded_memory_and_the_offline_scores(fast_run, offline, trained):
    status, out, folder, rows, run = fast_run
    summary = run["summary"]
    changes = [(int(k or 1), int(frame)) for k, frame in STRIDE_LINE.findall(out)]
    assert 1 <= len(changes) <= 3, out
    stride, since = changes[-1]
    assert stride >= 2 and summary["stride"] == stride, out
    scored = sorted(_scored(rows))
    gaps = np.diff([f for f in scored if f >= since])[1:]  # the first may be longer: frames let go before the change
    assert len(gaps) >= 3 and np.all(gaps % stride == 0) and np.mean(gaps == stride) >= 0.75, (scored, out)
    assert summary["frames_in"] == len(trained[2]["fast"]) and summary["peak_frames_held"] <= RING_FRAMES
    assert summary["scored"] + summary["dropped"] + summary["not_scored_by_stride"] == summary["frames_in"]
    assert re.search(rf"scoring 1 frame in {stride}: [\d.]+ of [\d.]+ frames/s", out)
    scores = _scored(rows)
    np.testing.assert_allclose([scores[f] for f in scored], offline["fast"][scored], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_stream_that_drops_is_reopened_then_ends_cleanly(trained, offline):
    root, config, clips = trained
    with PacedMJPEGServer(clips["anomaly"], 25, plan=[8, 100]) as server:  # cut after frame 7, then the rest
        status, out, folder, rows, run = _live(config, server.url, "--retries", 2, "--threshold", 1e9)
    assert status == 0, out
    lines = out.splitlines()
    assert any(re.fullmatch(r"stream stopped after frame 7: reopening \S+ in 0.5 s \(try 1 of 2\)", x) for x in lines)
    assert any(x.startswith("reopened ") and "frames from 8 on are a new segment" in x for x in lines)
    assert any(re.fullmatch(r"stream stopped after frame 19: reopening \S+ in 0.5 s \(try 1 of 2\)", x) for x in lines)
    assert any(re.fullmatch(r"cannot open it: reopening \S+ in 1 s \(try 2 of 2\)", x) for x in lines), out
    assert any(x.endswith("could not be reopened after 2 tries; stopping") for x in lines)
    summary = run["summary"]
    assert summary["frames_in"] == 20 and summary["segments"] == 2
    assert summary["ended_by"] == "the stream stopped and was not reopened"
    by_segment = {0: {}, 1: {}}
    for r in rows:
        by_segment[int(r["segment"])][int(r["frame"])] = float(r["score"])
    assert set(by_segment[0]) <= set(range(8)) and set(by_segment[1]) <= set(range(8, 20)) and by_segment[1]
    for segment, name, first in ((0, "head", 0), (1, "tail", 8)):  # each segment scored as a video of its own
        frames = sorted(by_segment[segment])
        np.testing.assert_allclose([by_segment[segment][f] for f in frames],
                                   offline[name][np.array(frames, dtype=int) - first], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--live", "nowhere.mp4"], "--live nowhere.mp4 not found"),
    (["--live", "0", "--threshold", "nan"], "--threshold nan must be a finite number"),
    (["--live", "0", "--min-gap", "-1"], "--min-gap -1.0 must be a finite number between 0 and 86400"),
    (["--live", "0", "--retries", "-2"], "--retries -2 must be a finite number between 0 and 1000"),
    (["--calibrate", "normal.mp4", "--false-alarms-per-hour", "inf"], "--false-alarms-per-hour inf must be a finite"),
    (["--threshold", "3"], "--threshold goes with --live"),
    (["--live", "0", "--video", "x.mp4"], "argument --video: not allowed with argument --live"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, args, message):
    config = write_config(tmp_path)
    assert vec_test.main(["--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_source_that_cannot_be_opened_is_one_line_exit_2(trained, capsys):
    root, config, _ = trained
    with PacedMJPEGServer([b"x"], 1) as server:  # a port that answers, then one that is closed
        url = server.url
    before = sorted((root / "results").glob("live/*"))
    assert vec_test.main(["--config", str(config), "--live", url]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot open {url}: check the URL, that the camera is on and reachable from here, " \
                  "and its user name and password\n"
    assert sorted((root / "results").glob("live/*")) == before
