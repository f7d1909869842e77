"""What a live run leaves in `results/live/<name>/`, written as it goes.

    run.json            the source, model, threshold and settings; rewritten with the summary at the end
    scores.csv          frame, segment, arrival_s, score, delay_s: one line per scored frame
    events.jsonl        one JSON line per alarm when it ends: start, end, peak frame and score, its image
    alarm_in_progress.json  the alarm going on, as its line will read so far (gone once it has ended)
    event_NNN.jpg       each alarm's peak frame, its boxes coloured by score (updated while the alarm rises)

A line is appended with a single `os.write` on a file opened for appending, as soon as it
is known, so a crash or Ctrl-C loses at most the frame being scored and never leaves half
a line; run.json, the alarm in progress and the images are replaced atomically (utils.infra.io).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np

from utils.cubes import ceil_box
from utils.infra.errors import VECError
from utils.infra.io import atomic_file, make_dirs, user_error_for, write_json
from utils.live.alarms import Event
from utils.own_video.outputs import score_colour

SCORES_HEADER = "frame,segment,arrival_s,score,delay_s\n"
IN_PROGRESS = "alarm_in_progress.json"


def colour_value(score: float, threshold: float | None, scale: float) -> float:
    """0 … 1 for `score_colour`: 0.5 (yellow) at the threshold, 1 (red) `scale` above it; without a
    threshold, the score relative to `scale`."""
    centre = threshold if threshold is not None else 0.0
    return min(max(0.5 + (score - centre) / (2 * scale), 0.0), 1.0)


def draw_scored_boxes(frame: np.ndarray, boxes: np.ndarray, cube_scores: np.ndarray, threshold: float | None,
                      caption: str) -> np.ndarray:
    """A copy of `frame` with each box in its score's colour, the highest labelled, and a caption."""
    image = frame.copy()
    height, width = image.shape[:2]
    thickness = max(1, int(round(min(height, width) / 300)))
    scale = max(1.0, abs(threshold) if threshold is not None else float(np.max(np.abs(cube_scores), initial=1.0)))
    for box, score in sorted(zip(boxes, cube_scores), key=lambda item: item[1]):  # the highest drawn last
        x1, y1, x2, y2 = ceil_box(box)
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), score_colour(colour_value(score, threshold, scale)), thickness)
    if len(cube_scores):
        top = int(np.argmax(cube_scores))
        x1, y1, _, _ = ceil_box(boxes[top])
        cv2.putText(image, f"{cube_scores[top]:.2f}", (max(0, x1), max(10, y1 - 3)), cv2.FONT_HERSHEY_PLAIN, 0.8,
                    score_colour(colour_value(cube_scores[top], threshold, scale)), 1, cv2.LINE_AA)
    cv2.putText(image, caption, (3, height - 5), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    return image


class LiveRecorder:
    def __init__(self, folder: Path, run_info: dict) -> None:
        self.folder = make_dirs(folder)
        self.run_info = run_info
        write_json(self.folder / "run.json", run_info)
        self._scores = self._open("scores.csv")
        self._events = self._open("events.jsonl")
        self._append(self._scores, SCORES_HEADER)

    def _open(self, name: str) -> int:
        path = self.folder / name
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as err:
            raise (user_error_for(err, path) or err) from None

    def _append(self, descriptor: int, text: str) -> None:
        data = text.encode()
        try:
            written = os.write(descriptor, data)
        except OSError as err:
            raise (user_error_for(err, self.folder) or err) from None
        if written != len(data):
            raise VECError(f"cannot write into {self.folder}: the write was cut short (is the disk full?)")

    def score(self, number: int, segment: int, arrival_s: float, score: float, delay_s: float) -> None:
        self._append(self._scores, f"{number},{segment},{arrival_s:.6f},{score!r},{delay_s:.6f}\n")

    def peak_image(self, event: Event, frame: np.ndarray, boxes: np.ndarray, cube_scores: np.ndarray,
                   threshold: float | None) -> str:
        """Write (or replace) the event's image; returns its file name."""
        name = f"event_{event.number:03d}.jpg"
        caption = f"event {event.number}: frame {event.peak_frame}, {event.peak_s:.1f} s, score {event.peak_score:.2f}"
        ok, encoded = cv2.imencode(".jpg", draw_scored_boxes(frame, boxes, cube_scores, threshold, caption),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise VECError(f"cannot encode the image of event {event.number} as JPEG")
        with atomic_file(self.folder / name) as f:
            f.write(encoded.tobytes())
        return name

    def alarm_in_progress(self, event: Event, image: str) -> None:
        write_json(self.folder / IN_PROGRESS, {**event.as_dict(), "image": image})

    def event(self, event: Event, image: str) -> None:
        self._append(self._events, json.dumps({**event.as_dict(), "image": image}) + "\n")
        (self.folder / IN_PROGRESS).unlink(missing_ok=True)

    def finish(self, summary: dict) -> None:
        for descriptor in (self._scores, self._events):
            os.close(descriptor)
        self._scores = self._events = None
        write_json(self.folder / "run.json", {**self.run_info, "summary": _finite(summary)})


def _finite(value):
    """JSON has no NaN: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
