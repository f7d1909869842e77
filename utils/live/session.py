"""`test.py --live SOURCE`: the live run, start to end (calibration is utils/live/calibrate.py).

    watch        model + threshold → scorer → open the source → run_session → summary
    run_session  reader thread → ring → score each planned frame → scores.csv, alarms, stride, status

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

from utils.cli import check_number
from utils.config import RunConfig, resolve_device
from utils.infra.errors import VECError, VECWarning
from utils.fingerprints import model_settings
from utils.infra.io import seed_everything
from utils.live.alarms import AlarmTracker, Event
from utils.live.calibrate import load_calibration
from utils.live.context import LOOKAHEAD, lookback
from utils.live.outputs import LiveRecorder
from utils.live.ring import RING_FRAMES, Arrival, StreamEnded, StreamRing
from utils.live.overlap import InLine, Preparer
from utils.live.scorer import FrameResult, FrameScorer, PreparedFrame, live_threads
from utils.live.source import FrameReader, LiveSource, cannot_open, open_capture, parse_source
from utils.live.status import STATUS_EVERY, DelayStats, Terminal, milliseconds
from utils.live.stride import StridePolicy
from utils.own_video.model import load_video_model

LIVE_FOLDER = "live"  # results/live/<name>/
MAX_WAITING = 2  # frames to score whose window is complete; older ones are dropped (the score would be late)


def _threshold(cfg: RunConfig, threshold: float | None, model_file: Path) -> tuple[float | None, str]:
    """The alarm threshold and where it comes from: --threshold, else the calibration beside the model."""
    if threshold is not None:
        return threshold, "--threshold"
    record = load_calibration(model_file)
    if record is None:
        return None, ""
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    changed = [key for key, value in model_settings(cfg).items() if settings.get(key) != value]
    if changed:
        warnings.warn(f"the threshold in {record['path']} was calibrated with other settings ({', '.join(changed)}); "
                      "calibrate again with these", VECWarning)
    on = ", ".join(Path(s["path"]).name for s in record["calibrated_on"])
    rate = record["false_alarms_per_hour"]
    return float(record["threshold"]), (f"calibrated on {on} for {rate:g} false alarm{'' if rate == 1 else 's'} "
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
    with live_threads(device):
        scorer = FrameScorer.from_config(cfg, trained, device)
        scorer.warm_up()
        capture = open_capture(source)
        if capture is None:
            raise cannot_open(source)
        run_info = {"source": source.shown, "source_kind": source.kind, "model": model_where, "threshold": threshold,
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
                ring_frames: int = RING_FRAMES, overlap: bool = True) -> dict:
    """Read `capture` on a thread and score frames as they come until the source ends (or Ctrl-C).

    The frames scored are chosen `stride` apart (StridePolicy, from the measured speed and the
    arrival rate); each one's line goes to scores.csv as soon as it is scored, each alarm to
    events.jsonl when it ends. `overlap`: the next frame is prepared while this one's networks run
    (utils/live/overlap.py; False: one after the other). Returns the summary (also in run.json)."""
    return _LiveRun(scorer, source, capture, folder, run_info, threshold, min_gap, retries, terminal,
                    ring_frames, overlap).run()


class _LiveRun:
    """One run of `run_session`: the reader thread feeds the ring; this thread scores, records and reports."""

    def __init__(self, scorer: FrameScorer, source: LiveSource, capture, folder: Path, run_info: dict,
                 threshold: float | None, min_gap: float, retries: int, terminal: Terminal, ring_frames: int,
                 overlap: bool) -> None:
        self.scorer, self.source, self.folder, self.terminal = scorer, source, folder, terminal
        self.threshold = threshold
        self.ring = StreamRing(ring_frames, lookback(scorer.cloze), LOOKAHEAD, max_waiting=MAX_WAITING)
        self.policy = StridePolicy(flows_per_frame=scorer.cloze.context_of_num + 1, overlapped=overlap)
        self.preparer = (Preparer if overlap else InLine)(self.ring.take, scorer)
        self.tracker = AlarmTracker(threshold, min_gap) if threshold is not None else None
        self.delays, self.compute = DelayStats(), DelayStats()
        # Where the time goes, per scored frame: each stage's seconds, and the scoring thread's wait.
        self.stages = {stage: DelayStats() for stage in ("flow", "boxes", "cubes", "networks", "waiting")}
        self.started = time.monotonic()
        self.recorder = LiveRecorder(folder, {**run_info, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              "started_unix": time.time(), "ring_frames": ring_frames})
        self.reader = FrameReader(source, capture, self.ring, retries=retries, say=terminal.say)
        self.scored, self.images, self.strides = 0, {}, deque(maxlen=20)
        self.replanned_from = (-1, 0)  # (segment, index) the plan restarted from at the last change of stride

    def run(self) -> dict:
        self.terminal.say(f"watching {self.source.shown}; results in {self.folder}")
        ended_by = "the source ended"
        self.reader.start()
        self.preparer.start()
        try:
            while True:
                waiting = time.perf_counter()
                try:
                    prepared = self.preparer.get(timeout=STATUS_EVERY)
                except StreamEnded:
                    break
                if prepared is not None:
                    self.stages["waiting"].add(time.perf_counter() - waiting)
                    frames = [f for f in (prepared, *self.preparer.waiting()) if self._in_plan(f.arrival)]
                    for frame, result in zip(frames, self.scorer.finish_all(frames)):
                        self._score(frame, result)
                self._status()
        except KeyboardInterrupt:
            ended_by = "interrupted (Ctrl-C)"
        except BaseException:
            self.reader.stop()
            self.preparer.stop()
            self.recorder.finish({"ended_by": "failed"})
            self.terminal.close()
            raise
        self.reader.stop()
        self.preparer.stop()
        self.reader.join(timeout=2)
        if self.reader.lost:
            ended_by = "the stream stopped and was not reopened"
        if self.tracker is not None and self.tracker.open is not None:
            self._close_alarm(self.tracker.finish())
        summary = self._summary(ended_by)
        self.recorder.finish(summary)
        self.terminal.close()
        if self.ring.frames_in == 0:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self.reader.broken:
                raise VECError(f"{self.source.shown} gave no usable frame: all {self.reader.broken} JPEGs it sent were "
                               "cut short or not decodable; check the camera's stream settings (or its network)")
            raise VECError(f"{self.source.shown} opened but gave no frame; check that it is a video and that it plays")
        return summary

    def _score(self, prepared: PreparedFrame, result: FrameResult) -> None:
        arrival = prepared.arrival
        done = time.monotonic()
        for stage, seconds in (("boxes", prepared.boxes_seconds), ("cubes", prepared.cubes_seconds),
                               ("networks", result.network_seconds)):
            self.stages[stage].add(seconds)
        if result.flows:
            self.stages["flow"].add(result.flow_seconds / result.flows)
        self.delays.add(done - arrival.time)
        self.compute.add(result.flow_seconds + result.other_seconds)
        self.scored += 1
        self.recorder.score(arrival.number, arrival.segment, arrival.time - self.started, result.score,
                            done - arrival.time)
        if self.tracker is not None:
            self._alarm(arrival, result)
        self.policy.record(result.flows, result.flow_seconds, result.other_seconds, result.network_seconds)
        rate = self.ring.arrival_rate()
        stride = self.policy.decide(done, rate, self.ring.dropped)
        if stride is not None:
            self.replanned_from = self.ring.set_stride(stride, arrival)
            self.strides.append({"from_frame": arrival.number, "stride": stride})
            self.terminal.say(_stride_line(stride, rate, self.policy.cost(stride), arrival.number))

    def _in_plan(self, arrival: Arrival) -> bool:
        """False for a frame prepared ahead under a stride that changed since (the ring planned past it)."""
        segment, first = self.replanned_from
        return arrival.segment != segment or arrival.index >= first

    def _alarm(self, arrival: Arrival, result) -> None:
        tracker = self.tracker
        ended, peak = tracker.update(arrival.number, arrival.time - self.started, result.score)
        if ended is not None:
            self._close_alarm(ended)
        if peak:
            self.images[tracker.open.number] = self.recorder.peak_image(tracker.open, arrival.frame, result.boxes,
                                                                        result.cube_scores, self.threshold)
        if tracker.open is not None and tracker.open.end_frame == arrival.number:
            self.recorder.alarm_in_progress(tracker.open, self.images[tracker.open.number])

    def _close_alarm(self, event: Event) -> None:
        image = self.images.pop(event.number)
        self.recorder.event(event, image)
        self.terminal.say(_event_line(event, image))

    def _status(self) -> None:
        ring, tracker = self.ring, self.tracker
        alarm = (f" | ALARM since {tracker.open.start_s:.1f} s, peak {tracker.open.peak_score:.2f}"
                 if tracker is not None and tracker.open is not None else "")
        self.terminal.status(f"frames in {ring.frames_in} | scored {self.scored} (1 in {ring.stride}) | dropped "
                             f"{ring.dropped} | delay {milliseconds(self.delays.recent_percentile(50))} median, "
                             f"{milliseconds(self.delays.recent_percentile(95))} p95{alarm}")

    def _summary(self, ended_by: str) -> dict:
        ring, seconds = self.ring, time.monotonic() - self.started
        flow, rest = self.policy.medians()
        return {"ended_by": ended_by, "seconds": seconds, "frames_in": ring.frames_in, "segments": ring.segments,
                "scored": self.scored, "dropped": ring.dropped,
                "dropped_after_first_second": ring.dropped_late, "broken_skipped": self.reader.broken,
                "not_scored_by_stride": ring.frames_in - self.scored - ring.dropped,
                "stride": ring.stride, "strides": list(self.strides),
                "scored_per_second": self.scored / seconds if seconds > 0 else math.nan,
                "arrival_rate": ring.arrival_rate(),
                "delay_median_s": self.delays.percentile(50), "delay_p95_s": self.delays.percentile(95),
                "score_seconds_median": self.compute.percentile(50), "score_seconds_p95": self.compute.percentile(95),
                "flow_seconds_median": flow, "rest_seconds_median": rest,
                "stage_seconds_median": {"decode": self.reader.decode_seconds.percentile(50),
                                         **{stage: stats.percentile(50) for stage, stats in self.stages.items()}},
                "events": self.tracker.count if self.tracker is not None else 0, "peak_frames_held": ring.peak_held,
                "results_dir": str(self.folder)}


