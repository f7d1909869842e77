"""`test.py --live SOURCE` and `test.py --calibrate VIDEO …`: the live run and the calibration, start to end.

    watch        model + threshold → scorer → open the source → run_session → summary
    run_session  reader thread → ring → score each planned frame → scores.csv, alarms, stride, status
    calibrate    score every frame of normal footage the same way → threshold file beside the model

The model is the configured dataset's, or the one in `--model DIR` (as for `--video`);
every stage runs with the configured dataset's settings.
"""
from __future__ import annotations

import math
import shutil
import time
import warnings
from collections import deque
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.config import RunConfig, resolve_device
from utils.errors import VECError, VECWarning
from utils.io import seed_everything
from utils.live.alarms import AlarmTracker, Event
from utils.live.calibrate import calibration_record, choose_threshold, load_calibration, save_calibration
from utils.live.context import LOOKAHEAD, lookback
from utils.live.outputs import LiveRecorder
from utils.live.ring import Arrival, StreamEnded, StreamRing
from utils.live.scorer import FrameScorer
from utils.live.source import (DEFAULT_FILE_FPS, FrameReader, LiveSource, cannot_open, file_fps, open_capture,
                               parse_source)
from utils.live.status import STATUS_EVERY, DelayStats, Terminal, milliseconds
from utils.live.stride import StridePolicy
from utils.pipeline import model_settings
from utils.video_pipeline import load_video_model
from utils.videos import iter_source_frames, probe_source, source_fingerprint

LIVE_FOLDER = "live"  # results/live/<name>/
RING_FRAMES = 24  # frames held at most: about a second at 25 frames/s
MAX_WAITING = 2  # frames to score whose window is complete; older ones are dropped (the score would be late)


def check_number(flag: str, value: float, low: float, high: float = math.inf) -> float:
    """`value` of `flag` as a finite number within [low, high], else a one-line VECError."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        limits = ("" if low == -math.inf and high == math.inf else f" at least {low:g}" if high == math.inf
                  else f" between {low:g} and {high:g}")
        raise VECError(f"{flag} {value} must be a finite number{limits}")
    return value


def _threshold(cfg: RunConfig, threshold: float | None, model_file: Path) -> tuple[float | None, str]:
    """The alarm threshold and where it comes from: --threshold, else the calibration beside the model."""
    if threshold is not None:
        return threshold, "--threshold"
    record = load_calibration(model_file)
    if record is None:
        return None, ""
    changed = [key for key, value in model_settings(cfg).items() if record.get("settings", {}).get(key) != value]
    if changed:
        warnings.warn(f"the threshold in {record['path']} was calibrated with other settings ({', '.join(changed)}); "
                      "calibrate again with these", VECWarning)
    on = ", ".join(Path(s["path"]).name for s in record["calibrated_on"])
    return float(record["threshold"]), (f"calibrated on {on} for {record['false_alarms_per_hour']:g} false alarms "
                                        f"per hour, {record['path']}")


def _results_folder(cfg: RunConfig, source: LiveSource) -> Path:
    """results/live/<source>-<start time>/: each run its own folder, nothing overwritten."""
    base = cfg.results_dir / LIVE_FOLDER / f"{source.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, number = base, 1
    while folder.exists():
        number += 1
        folder = base.with_name(f"{base.name}-{number}")
    return folder


def watch(cfg: RunConfig, source_text: str, *, model_dir: Path | None = None, threshold: float | None = None,
          min_gap: float = 2.0, retries: int = 5, terminal: Terminal | None = None) -> dict:
    """Watch `source_text` (a camera index, a stream URL or a video file) until it ends, cannot be
    reopened, or Ctrl-C; returns the run's summary. Outputs in results/live/<source>-<start time>/."""
    if threshold is not None:
        check_number("--threshold", threshold, -math.inf)
    check_number("--min-gap", min_gap, 0, 24 * 3600)
    check_number("--retries", retries, 0, 1000)
    terminal = terminal or Terminal()
    source = parse_source(source_text)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    trained, model_where = load_video_model(cfg, model_dir)
    terminal.say(f"model: {model_where}")
    threshold, origin = _threshold(cfg, threshold, Path(model_where))
    terminal.say(f"threshold: {threshold:.4f} ({origin})" if threshold is not None else
                 "no threshold: scores only, no alarms (pass --threshold T, or calibrate one on normal footage "
                 "with `python test.py --calibrate VIDEO`)")
    scorer = FrameScorer.from_config(cfg, trained, device)
    scorer.warm_up()
    capture = open_capture(source)
    if capture is None:
        raise cannot_open(source)
    run_info = {"source": source.given, "source_kind": source.kind, "model": model_where, "threshold": threshold,
                "threshold_from": origin or None, "min_gap_s": min_gap, "retries": retries, "device": device,
                "settings": model_settings(cfg)}
    return run_session(scorer, source, capture, _results_folder(cfg, source), run_info, threshold=threshold,
                       min_gap=min_gap, retries=retries, terminal=terminal)


def _stride_line(stride: int, rate: float, cost: float, number: int) -> str:
    what = "scoring every frame" if stride == 1 else f"scoring 1 frame in {stride}"
    return (f"{what}: {rate / stride:.1f} of {rate:.1f} frames/s (a scored frame takes {milliseconds(cost)}; "
            f"from frame {number})")


def _event_line(event: Event, image: str) -> str:
    return (f"alarm {event.number}: {event.start_s:.1f}–{event.end_s:.1f} s (frames {event.start_frame}–"
            f"{event.end_frame}), peak {event.peak_score:.3f} at frame {event.peak_frame} ({event.peak_s:.1f} s) "
            f"→ {image}")


def run_session(scorer: FrameScorer, source: LiveSource, capture, folder: Path, run_info: dict, *,
                threshold: float | None, min_gap: float, retries: int, terminal: Terminal,
                ring_frames: int = RING_FRAMES) -> dict:
    """Read `capture` on a thread and score frames as they come until the source ends (or Ctrl-C).

    The frames scored are chosen `stride` apart (StridePolicy, from the measured speed and the
    arrival rate); each one's line goes to scores.csv as soon as it is scored, each alarm to
    events.jsonl when it ends. Returns the summary (also in run.json)."""
    ring = StreamRing(ring_frames, lookback(scorer.cloze), LOOKAHEAD, max_waiting=MAX_WAITING)
    policy = StridePolicy(flows_per_frame=scorer.cloze.context_of_num + 1)
    tracker = AlarmTracker(threshold, min_gap) if threshold is not None else None
    delays, compute = DelayStats(), DelayStats()
    started, started_unix = time.monotonic(), time.time()
    recorder = LiveRecorder(folder, {**run_info, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     "started_unix": started_unix, "ring_frames": ring_frames})
    terminal.say(f"watching {source.given}; results in {folder}")
    reader = FrameReader(source, capture, ring, retries=retries, say=terminal.say)
    scored, images, ended_by, strides = 0, {}, "the source ended", deque(maxlen=20)

    def close_event(event: Event) -> None:
        image = images.pop(event.number)
        recorder.event(event, image)
        terminal.say(_event_line(event, image))

    reader.start()
    try:
        while True:
            try:
                target = ring.take(timeout=STATUS_EVERY)
            except StreamEnded:
                break
            if target is not None:
                arrival = target.arrival
                result = scorer.score(target)
                done = time.monotonic()
                delays.add(done - arrival.time)
                compute.add(result.flow_seconds + result.other_seconds)
                scored += 1
                recorder.score(arrival.number, arrival.segment, arrival.time - started, result.score,
                               done - arrival.time)
                if tracker is not None:
                    ended, peak = tracker.update(arrival.number, arrival.time - started, result.score)
                    if ended is not None:
                        close_event(ended)
                    if peak:
                        images[tracker.open.number] = recorder.peak_image(tracker.open, arrival.frame, result.boxes,
                                                                          result.cube_scores, threshold)
                    if tracker.open is not None and tracker.open.end_frame == arrival.number:
                        recorder.alarm_in_progress(tracker.open, images[tracker.open.number])
                policy.record(result.flows, result.flow_seconds, result.other_seconds)
                rate = ring.arrival_rate()
                stride = policy.decide(done, rate, ring.dropped)
                if stride is not None:
                    ring.set_stride(stride, arrival)
                    strides.append({"from_frame": arrival.number, "stride": stride})
                    terminal.say(_stride_line(stride, rate, policy.cost(stride), arrival.number))
            alarm = (f" | ALARM since {tracker.open.start_s:.1f} s, peak {tracker.open.peak_score:.2f}"
                     if tracker is not None and tracker.open is not None else "")
            terminal.status(f"frames in {ring.frames_in} | scored {scored} (1 in {ring.stride}) | dropped "
                            f"{ring.dropped} | delay {milliseconds(delays.recent_percentile(50))} median, "
                            f"{milliseconds(delays.recent_percentile(95))} p95{alarm}")
    except KeyboardInterrupt:
        ended_by = "interrupted (Ctrl-C)"
    except BaseException:
        reader.stop()
        recorder.finish({"ended_by": "failed"})
        terminal.close()
        raise
    reader.stop()
    reader.join(timeout=2)
    if reader.lost:
        ended_by = "the stream stopped and was not reopened"
    if tracker is not None and tracker.open is not None:
        close_event(tracker.finish())
    seconds = time.monotonic() - started
    not_planned = ring.frames_in - scored - ring.dropped
    summary = {"ended_by": ended_by, "seconds": seconds, "frames_in": ring.frames_in, "segments": ring.segments,
               "scored": scored, "dropped": ring.dropped, "not_scored_by_stride": not_planned,
               "stride": ring.stride, "strides": list(strides),
               "scored_per_second": scored / seconds if seconds > 0 else math.nan, "arrival_rate": ring.arrival_rate(),
               "delay_median_s": delays.percentile(50), "delay_p95_s": delays.percentile(95),
               "score_seconds_median": compute.percentile(50), "score_seconds_p95": compute.percentile(95),
               "events": tracker.count if tracker is not None else 0, "peak_frames_held": ring.peak_held,
               "results_dir": str(folder)}
    recorder.finish(summary)
    terminal.close()
    if ring.frames_in == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise VECError(f"{source.given} opened but gave no frame; check that it is a video and that it plays")
    return summary


def _file_rate(source, fps: float | None) -> float:
    """A video file's own frame rate; for a folder of frames (or a file without one) `fps`, default 25."""
    rate = None if source.is_folder else file_fps(source.path)
    return rate or fps or DEFAULT_FILE_FPS


def score_every_frame(scorer: FrameScorer, frames, label: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The score of every frame of one video (an iterable of BGR frames), through the live path
    (ring, windows, scorer) without threads or pacing, and the seconds each took to score; a change
    of frame size is a VECError."""
    ring = StreamRing(RING_FRAMES, lookback(scorer.cloze), LOOKAHEAD)
    scores, seconds, size, count = [], [], None, 0

    def drain() -> None:
        while True:
            target = ring.take(timeout=0)
            if target is None:
                return
            result = scorer.score(target)
            scores.append(result.score)
            seconds.append(result.flow_seconds + result.other_seconds)

    for frame in tqdm(frames, desc=f"calibrate ({label})", unit="frame", disable=not progress):
        if size is not None and frame.shape != size:
            raise VECError(f"frame {count} of {label} is {frame.shape[1]}x{frame.shape[0]} but the frames before it "
                           f"are {size[1]}x{size[0]}; all frames of a video must share one size")
        size = frame.shape
        ring.put(Arrival(0, count, count, 0.0, frame))
        count += 1
        drain()
    ring.end_segment(0, count)
    ring.close()
    try:
        drain()
        ring.take(timeout=0)
    except StreamEnded:
        pass
    if len(scores) != count:
        raise RuntimeError(f"scored {len(scores)} of {count} frames")  # every frame is planned at stride 1
    return np.asarray(scores), np.asarray(seconds)


def calibrate(cfg: RunConfig, paths: list[Path], *, model_dir: Path | None = None,
              false_alarms_per_hour: float = 1.0, min_gap: float = 2.0, fps: float | None = None,
              progress: bool = True) -> dict:
    """Score every frame of the normal videos `paths` (files or folders of frames) and store the
    threshold that raises at most `false_alarms_per_hour` alarms on them beside the model."""
    check_number("--false-alarms-per-hour", false_alarms_per_hour, 0, 1e6)
    check_number("--min-gap", min_gap, 0, 24 * 3600)
    if fps is not None:
        check_number("--fps", fps, 1e-3, 1000)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    sources = [probe_source(Path(p), cfg.cloze.tot_raw_num) for p in paths]
    trained, model_where = load_video_model(cfg, model_dir)
    print(f"model: {model_where}")
    scorer = FrameScorer.from_config(cfg, trained, device)
    all_scores, all_times, all_seconds, described, offset = [], [], [], [], 0.0
    for source in sources:
        rate = _file_rate(source, fps)
        scores, seconds = score_every_frame(scorer, iter_source_frames(source), source.name, progress)
        all_seconds.append(seconds)
        # Separate videos never share an alarm: each starts more than min_gap after the previous one.
        times = offset + np.arange(len(scores)) / rate
        offset = times[-1] + min_gap + 1.0
        all_scores.append(scores)
        all_times.append(times)
        described.append({"path": str(source.path), "fingerprint": source_fingerprint(source),
                          "frames": len(scores), "fps": rate, "seconds": len(scores) / rate})
    scores, times = np.concatenate(all_scores), np.concatenate(all_times)
    seconds = sum(d["seconds"] for d in described)
    allowed = math.floor(false_alarms_per_hour * seconds / 3600)
    try:
        threshold, events = choose_threshold(scores, times, min_gap, allowed)
    except ValueError:
        raise VECError(f"no frame of {', '.join(str(p) for p in paths)} has a box (nothing moves in it?), so there "
                       "is nothing to calibrate on; use footage with the usual activity") from None
    record = calibration_record(threshold, events, scores, seconds, false_alarms_per_hour, allowed, min_gap, described,
                                Path(model_where), model_settings(cfg))
    record["score_seconds_median"] = float(np.median(np.concatenate(all_seconds)))  # this machine's speed
    path = save_calibration(Path(model_where), record)
    return {**record, "path": str(path)}
