"""The alarm threshold calibrated on footage the user says is normal, and the file that keeps it.

`choose_threshold`: of the levels the normal scores take, the lowest at which the alarms
(utils/live/alarms.py, the same `min_gap`) on that footage stay within the allowed false
alarms, `false_alarms_per_hour` × its duration in hours, rounded down; the threshold sits
halfway between that level and the next score above it (above the highest score: half
the gap to the one below), so replaying the footage raises exactly the counted alarms
and rounding noise cannot tip a frame over.

The threshold file sits beside the model, `<model file stem>.threshold.json`, with what it
was calibrated on (paths, SHA-256, frames, duration) and the model's SHA-256: a model
trained again makes the file stale, and `load_calibration` says so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from utils.errors import VECError
from utils.io import sha256_file, write_json
from utils.live.alarms import count_events
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
