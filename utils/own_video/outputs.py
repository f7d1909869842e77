"""What a user looks at after `test.py --video`, beside the score plot (utils.report.plot_video_scores).

    normalise_scores        min-max over the frames that have a box
    write_frame_scores_csv  frame, time_s, score, normalised_score
    write_annotated_video   every frame with its boxes coloured by score and a running score curve (mp4v)

The annotated video streams: one frame is read, drawn and encoded at a time.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.cubes import ceil_box
from utils.infra.errors import VECError
from utils.infra.io import atomic_file, free_space_note, make_dirs
from utils.scoring import NO_BOX_SCORE
from utils.infra.video_frames import declared_properties


def normalise_scores(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min-max normalised frame scores over the frames that have a box (0..1), NaN for the others.

    Returns (normalised, low, high); when every scored frame has the same score all are 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    has_box = scores > NO_BOX_SCORE
    normalised = np.full(len(scores), np.nan)
    if not has_box.any():
        return normalised, math.nan, math.nan
    low, high = float(scores[has_box].min()), float(scores[has_box].max())
    normalised[has_box] = (scores[has_box] - low) / (high - low) if high > low else 0.0
    return normalised, low, high


def write_frame_scores_csv(path: Path, scores: np.ndarray, normalised: np.ndarray, fps: float) -> None:
    """frame (0-based), time_s (frame / fps), score (the pipeline's; -100000 = no box), normalised_score
    (empty where the frame has no box). Scores are written in full precision (repr)."""
    with atomic_file(path, "w") as f:
        f.write("frame,time_s,score,normalised_score\n")
        for i, (score, norm) in enumerate(zip(scores, normalised)):
            f.write(f"{i},{i / fps:.6f},{float(score)!r},{'' if math.isnan(norm) else repr(float(norm))}\n")


def score_colour(value: float) -> tuple[int, int, int]:
    """BGR colour of a normalised score: green (0) → yellow (0.5) → red (1); grey for NaN."""
    if value is None or math.isnan(value):
        return (160, 160, 160)
    value = min(max(float(value), 0.0), 1.0)
    if value < 0.5:
        return (0, int(190 + 60 * value * 2), int(255 * value * 2))
    return (0, int(250 * (1 - value) * 2), 255)


class _ScoreStrip:
    """The running score curve: a semi-transparent strip at the bottom of each frame.

    The whole curve is drawn once (time runs left to right over the video's length) and
    each frame shows it up to its own time, with a cursor, so drawing costs the same on
    every frame whatever the video's length.
    """

    def __init__(self, normalised: np.ndarray, height: int, width: int) -> None:
        self.height = max(20, int(round(height * 0.2)))
        self.width = width
        pad = 3
        n = len(normalised)
        self.x = np.round(np.arange(n) * (width - 1) / max(n - 1, 1)).astype(np.int64)
        valid = ~np.isnan(normalised)
        y = pad + np.round((1 - np.nan_to_num(normalised)) * (self.height - 1 - 2 * pad)).astype(np.int64)
        self.layer = np.zeros((self.height, width, 3), np.uint8)
        for i in range(n):
            if not valid[i]:
                continue
            start = (int(self.x[i - 1]), int(y[i - 1])) if i > 0 and valid[i - 1] else (int(self.x[i]), int(y[i]))
            cv2.line(self.layer, start, (int(self.x[i]), int(y[i])), score_colour(normalised[i]), 1)
        self.mask = self.layer.any(axis=2)

    def draw(self, frame: np.ndarray, i: int, text: str) -> None:
        strip = frame[-self.height:]
        strip[:] = cv2.convertScaleAbs(strip, alpha=0.35)
        shown = int(self.x[i]) + 1
        mask = self.mask[:, :shown]
        strip[:, :shown][mask] = self.layer[:, :shown][mask]
        cv2.line(strip, (shown - 1, 0), (shown - 1, self.height - 1), (255, 255, 255), 1)
        cv2.putText(strip, text, (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)


def write_annotated_video(path: Path, frame_paths: list[Path], fps: float, normalised: np.ndarray,
                          cube_frame_index: np.ndarray, cube_boxes: np.ndarray, cube_normalised: np.ndarray,
                          progress: bool = True) -> None:
    """`path` (.mp4, fourcc mp4v): every frame at its size and the given rate, each scored box drawn in
    its score's colour (the frame's highest box labelled with its score), and the running score curve.

    Streams: one frame is read, drawn and encoded at a time. Written under a temporary name
    beside `path` and renamed when complete.
    """
    path = Path(path)
    first = cv2.imread(str(frame_paths[0]))
    height, width = first.shape[:2]
    strip = _ScoreStrip(np.asarray(normalised, dtype=np.float64), height, width)
    order = np.argsort(cube_frame_index, kind="stable")
    sorted_frames = np.asarray(cube_frame_index)[order]
    thickness = max(1, int(round(min(height, width) / 300)))
    make_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise VECError(f"cannot write {path}: OpenCV's video writer does not open (fourcc mp4v)")
        for i, frame_path in enumerate(tqdm(frame_paths, desc="annotated video", unit="frame", disable=not progress)):
            frame = cv2.imread(str(frame_path))
            if frame is None:
                raise VECError(f"frame {frame_path} is missing or corrupt; delete its folder and rerun")
            lo, hi = np.searchsorted(sorted_frames, i, "left"), np.searchsorted(sorted_frames, i, "right")
            members = order[lo:hi]
            top = members[np.argmax(cube_normalised[members])] if len(members) else -1
            for n in members:
                x1, y1, x2, y2 = ceil_box(cube_boxes[n])
                cv2.rectangle(frame, (x1, y1), (x2 - 1, y2 - 1), score_colour(cube_normalised[n]), thickness)
            if top >= 0:
                x1, y1, _, _ = ceil_box(cube_boxes[top])
                cv2.putText(frame, f"{cube_normalised[top]:.2f}", (max(0, x1), max(10, y1 - 3)),
                            cv2.FONT_HERSHEY_PLAIN, 0.8, score_colour(cube_normalised[top]), 1, cv2.LINE_AA)
            score = normalised[i]
            strip.draw(frame, i, f"{i / fps:.1f} s  " + ("no box" if math.isnan(score) else f"score {score:.2f}"))
            writer.write(frame)
        writer.release()
        _check_written(temporary, len(frame_paths), path)
        os.replace(temporary, path)
    except BaseException:
        writer.release()
        Path(temporary).unlink(missing_ok=True)
        raise


def _check_written(video: str, n_frames: int, path: Path) -> None:
    """OpenCV's writer reports no failed write (a full disk gives a cut file): read the count back."""
    count = declared_properties(video, must_open=False).frames or 0
    if count != n_frames:
        raise VECError(f"cannot write {path}: OpenCV's video writer wrote a file with {count} of {n_frames} frames "
                       f"({free_space_note(path.parent)}); make room or check the folder and rerun")
