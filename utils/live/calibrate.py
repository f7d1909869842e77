"""Calibration: the alarm threshold calibrated on footage the user says is normal, and the file that keeps it.

`choose_threshold`: of the levels the normal scores take, the lowest at which the alarms
(utils/live/alarms.py, the same `min_gap`) on that footage stay within the allowed false
alarms, `false_alarms_per_hour` × its duration in hours, rounded down; the threshold sits
halfway between that level and the next score above it (above the highest score: half
the gap to the one below), so replaying the footage raises exactly the counted alarms
and rounding noise cannot tip a frame over.

`calibrate` (`test.py --calibrate VIDEO …`) scores every frame of the footage through the live
path (`score_every_frame`: ring, windows, scorer, without threads or pacing) and stores the
threshold. The threshold file sits beside the model, `<model file stem>.threshold.json`, with what it
was calibrated on (paths, SHA-256, frames, duration) and the model's SHA-256: a model
trained again makes the file stale, and `load_calibration` says so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.cli import check_number
from utils.config import RunConfig, resolve_device
from utils.infra.errors import VECError
from utils.fingerprints import model_settings
from utils.infra.io import seed_everything, sha256_file, write_json
from utils.live.alarms import count_events
from utils.live.context import LOOKAHEAD, lookback
from utils.live.ring import RING_FRAMES, Arrival, StreamEnded, StreamRing
from utils.live.overlap import InLine, Preparer, taking
from utils.live.scorer import FrameScorer, live_threads
from utils.live.source import DEFAULT_FILE_FPS, file_fps
from utils.own_video.model import load_video_model
from utils.own_video.source import iter_source_frames, probe_source, source_identity
from utils.scoring import NO_BOX_SCORE

CALIBRATION_SUFFIX = ".threshold.json"
# Frames with a box a calibration needs at least: the threshold sits just above the normal scores, and a
# handful of them says nothing of the scene's ordinary variety.
MIN_FRAMES_WITH_BOXES = 20


def is_number(value) -> bool:
    """A finite JSON number: int or float, not a bool (JSON's true is no threshold) nor a string."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def calibration_path(model_file: Path) -> Path:
    """`data/raw2flow/synthetic_model_obj_det_with_motion_SelfComplete.npy` →
    `…/synthetic_model_obj_det_with_motion_SelfComplete.threshold.json`."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.stem + CALIBRATION_SUFFIX)


def choose_threshold(scores: np.ndarray, times: np.ndarray, min_gap: float, allowed_events: int) -> tuple[float, int]:
    """(threshold, the events it raises on these scores); scores of frames without a box never count.
    Raises ValueError when no frame has a box."""
    scores = np.asarray(scores, dtype=np.float64)
    levels = np.unique(scores[scores > NO_BOX_SCORE])
    if len(levels) == 0:
        raise ValueError("no frame has a box")

    def events(level: float) -> int:
        return count_events(scores, times, level, min_gap)

    # The lowest level with few enough events (the count falls as the level rises; nothing is above the top one).
    low, high = 0, len(levels) - 1
    while low < high:
        middle = (low + high) // 2
        if events(levels[middle]) <= allowed_events:
            high = middle
        else:
            low = middle + 1
    level = float(levels[low])
    if low + 1 < len(levels):
        threshold = (level + float(levels[low + 1])) / 2
    else:
        below = level - float(levels[low - 1]) if low > 0 else 0.0
        threshold = level + max(below / 2, 1e-6 * max(1.0, abs(level)))
    return threshold, events(threshold)


def calibration_record(threshold: float, events: int, scores: np.ndarray, seconds: float, false_alarms_per_hour: float,
                       allowed_events: int, min_gap: float, sources: list[dict], model_file: Path,
                       settings: dict) -> dict:
    valid = np.asarray(scores, dtype=np.float64)
    valid = valid[valid > NO_BOX_SCORE]
    return {"threshold": threshold, "false_alarms_per_hour": false_alarms_per_hour, "min_gap_s": min_gap,
            "seconds": seconds, "allowed_events": allowed_events, "events_at_threshold": events,
            "frames": int(len(scores)), "frames_with_boxes": int(len(valid)),
            "normal_scores": {"median": float(np.median(valid)), "p99": float(np.percentile(valid, 99)),
                              "max": float(valid.max())},
            "calibrated_on": sources,
            "model": {"path": str(model_file), "sha256": sha256_file(model_file)},
            "settings": settings}


def save_calibration(model_file: Path, record: dict) -> Path:
    path = calibration_path(model_file)
    write_json(path, record)
    return path


def load_calibration(model_file: Path) -> dict | None:
    """The calibration beside `model_file`, None when there is none; a VECError when it is unreadable
    or was made for another version of the model."""
    path = calibration_path(model_file)
    if not path.is_file():
        return None
    redo = "rerun `python test.py --calibrate NORMAL_VIDEO` or pass --threshold T"
    try:
        record = json.loads(path.read_text())
        threshold, digest, rate = record["threshold"], record["model"]["sha256"], record["false_alarms_per_hour"]
        sources = [str(source["path"]) for source in record["calibrated_on"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise VECError(f"the threshold file {path} is unreadable; delete it and {redo}") from None
    if not is_number(threshold):
        raise VECError(f"the threshold file {path} holds threshold {json.dumps(threshold)}, not a finite number; "
                       f"delete it and {redo}")
    if not is_number(rate) or not isinstance(digest, str) or not sources:
        raise VECError(f"the threshold file {path} is damaged (false_alarms_per_hour, model or calibrated_on); "
                       f"delete it and {redo}")
    if digest != sha256_file(model_file):
        raise VECError(f"the threshold in {path} was calibrated for another version of {Path(model_file).name} "
                       f"(it was trained again since); {redo}")
    record["path"] = str(path)
    return record


def _file_rate(source, fps: float | None) -> float:
    """A video file's own frame rate; for a folder of frames (or a file without one) `fps`, default 25."""
    rate = None if source.is_folder else file_fps(source.path)
    return rate or fps or DEFAULT_FILE_FPS


def score_every_frame(scorer: FrameScorer, frames, label: str, progress: bool = True,
                      overlap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The score of every frame of one video (an iterable of BGR frames), through the live path
    (ring, windows, scorer) without pacing, and the seconds each took to score; a change of frame
    size is a VECError. As in a live run, the next frame is prepared on a thread while this
    one's networks run (utils/live/overlap.py; `overlap` False: one after the other)."""
    ring = StreamRing(RING_FRAMES, lookback(scorer.cloze), LOOKAHEAD)
    count = 0

    def targets():
        """Each frame into the ring, and the frames to score out of it, in order (every frame: stride 1)."""
        nonlocal count
        size = None
        for frame in tqdm(frames, desc=f"calibrate ({label})", unit="frame", disable=not progress):
            if size is not None and frame.shape != size:
                raise VECError(f"frame {count} of {label} is {frame.shape[1]}x{frame.shape[0]} but the frames before "
                               f"it are {size[1]}x{size[0]}; all frames of a video must share one size")
            size = frame.shape
            ring.put(Arrival(0, count, count, 0.0, frame))
            count += 1
            while (target := ring.take(timeout=0)) is not None:
                yield target
        ring.end_segment(0, count)
        ring.close()
        while (target := ring.take(timeout=0)) is not None:  # raises StreamEnded once all are out
            yield target

    scores, seconds = [], []
    preparer = (Preparer if overlap else InLine)(taking(targets()), scorer).start()
    try:
        while True:
            try:
                prepared = preparer.get(timeout=1.0)
            except StreamEnded:
                break
            if prepared is not None:
                for result in scorer.finish_all([prepared, *preparer.waiting()]):
                    scores.append(result.score)
                    seconds.append(result.flow_seconds + result.other_seconds)
    finally:
        preparer.stop()
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
    all_scores, all_times, all_seconds, described, offset = [], [], [], [], 0.0
    with live_threads(device):
        scorer = FrameScorer.from_config(cfg, trained, device)
        scored = [score_every_frame(scorer, iter_source_frames(source), source.name, progress) for source in sources]
    for source, (scores, seconds) in zip(sources, scored):
        rate = _file_rate(source, fps)
        all_seconds.append(seconds)
        # Separate videos never share an alarm: each starts more than min_gap after the previous one.
        times = offset + np.arange(len(scores)) / rate
        offset = times[-1] + min_gap + 1.0
        all_scores.append(scores)
        all_times.append(times)
        described.append({"path": str(source.path), "fingerprint": source_identity(source),
                          "frames": len(scores), "fps": rate, "seconds": len(scores) / rate})
    scores, times = np.concatenate(all_scores), np.concatenate(all_times)
    seconds = sum(d["seconds"] for d in described)
    allowed = math.floor(false_alarms_per_hour * seconds / 3600)
    with_boxes = int(np.count_nonzero(scores > NO_BOX_SCORE))
    if with_boxes < MIN_FRAMES_WITH_BOXES:  # nothing is stored: a threshold from so few frames would mislead
        raise VECError(f"only {with_boxes} of the {len(scores)} frames of {', '.join(str(p) for p in paths)} have a "
                       f"box (VEC scores only frames where something moves); calibrating needs at least "
                       f"{MIN_FRAMES_WITH_BOXES}: use longer footage, or more videos, of the scene's usual activity")
    threshold, events = choose_threshold(scores, times, min_gap, allowed)
    record = calibration_record(threshold, events, scores, seconds, false_alarms_per_hour, allowed, min_gap, described,
                                Path(model_where), model_settings(cfg))
    record["score_seconds_median"] = float(np.median(np.concatenate(all_seconds)))  # this machine's speed
    path = save_calibration(Path(model_where), record)
    return {**record, "path": str(path)}
