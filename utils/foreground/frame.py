"""Foreground boxes of ONE frame (docs/method.md §3): appearance boxes, cover removal, motion boxes.

Boxes are (x1, y1, x2, y2). Every step reproduces the reference's arithmetic, including
its +1 area convention and the uint8 wrap-around of the motion sum (which
`wrap_uint8=False` turns off).
"""
from __future__ import annotations

import itertools

import cv2
import numpy as np

from utils.config import BoxParams

# The modes whose boxes start from an appearance detector.
MODES_WITH_DETECTOR = ("obj_det_with_motion", "obj_det")
PATCH_GRIDS = ((3, 4), (6, 8))


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 3] - boxes[:, 1] + 1) * (boxes[:, 2] - boxes[:, 0] + 1)


def filter_detections(dets: np.ndarray, score_thr: float, min_area: float) -> np.ndarray:
    """Detections (N, 5: box, score) with score > score_thr and area >= min_area → (M, 4)."""
    dets = np.asarray(dets).reshape(-1, 5)
    dets = dets[dets[:, 4] > score_thr]
    return dets[_areas(dets) >= min_area, :4]


def remove_covered(boxes: np.ndarray, cover_thr: float) -> np.ndarray:
    """Drop boxes mostly covered by a larger one.

    Boxes are visited from the smallest area to the largest; a box is dropped when its
    intersection with any box after it in that order covers more than cover_thr of its
    own area. The kept boxes come back in that ascending-area order (the reference's).
    """
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    areas = _areas(boxes)
    order = areas.argsort()
    keep = []
    for rank, i in enumerate(order):
        later = order[rank + 1:]
        inter_w = np.maximum(0, np.minimum(boxes[i, 2], boxes[later, 2]) - np.maximum(boxes[i, 0], boxes[later, 0]) + 1)
        inter_h = np.maximum(0, np.minimum(boxes[i, 3], boxes[later, 3]) - np.maximum(boxes[i, 1], boxes[later, 1]) + 1)
        if not np.any(inter_w * inter_h / areas[i] > cover_thr):
            keep.append(i)
    return boxes[keep]


def motion_boxes(frames: np.ndarray, boxes: np.ndarray, area_thr: float, binary_thr: float, extend: int,
                 blur: int, wrap_uint8: bool = True) -> np.ndarray:
    """Boxes around moving regions not explained by the appearance boxes.

    frames: (3, H, W, 3) uint8 BGR, frames i-1, i, i+1; boxes: kept appearance boxes.
    Returns (L, 4) int64 boxes grown by `extend` and clipped to the image.
    """
    blurred = [cv2.GaussianBlur(f, (blur, blur), 0) for f in frames]
    diffs = [cv2.absdiff(a, b) for a, b in zip(blurred[:-1], blurred[1:])]
    if wrap_uint8:
        motion = diffs[0].copy()
        for d in diffs[1:]:
            motion += d  # uint8 addition wraps above 255, as in the reference
    else:
        motion = np.minimum(np.sum(diffs, axis=0, dtype=np.int32), 255).astype(np.uint8)
    mask = cv2.threshold(motion, binary_thr, 255, cv2.THRESH_BINARY)[1]

    height, width = mask.shape[:2]
    for box in np.asarray(boxes).reshape(-1, 4):
        x1, y1, x2, y2 = box.astype(np.int32)
        mask[max(0, y1 - extend):min(y2 + extend, height) + 1, max(0, x1 - extend):min(x2 + extend, width) + 1] = 0

    grey = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY) if mask.ndim == 3 else mask
    contours, _ = cv2.findContours(grey, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if (w + 1) * (h + 1) > area_thr and w / h < 10 and h / w < 10:
            found.append([max(0, x - extend), max(0, y - extend), min(x + w + extend, width), min(y + h + extend, height)])
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def patch_grid(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """Fixed grid of rows x cols boxes over the frame (`simple_patch` mode), column-major as the reference."""
    h_step, w_step = height / rows, width / cols
    ys = np.linspace(0, height - 1, rows, endpoint=False)
    xs = np.linspace(0, width - 1, cols, endpoint=False)
    return np.array([[x, y, min(x + w_step, width - 1), min(y + h_step, height - 1)]
                     for x, y in itertools.product(xs, ys)])


def frame_box(height: int, width: int) -> np.ndarray:
    """One box covering the whole frame (`frame` mode)."""
    return np.array([[0, 0, width, height]])


def frame_boxes(mode: str, frames: np.ndarray, detections: np.ndarray | None, params: BoxParams) -> np.ndarray:
    """Boxes of the middle frame of `frames` (frames i-1, i, i+1) for one foreground mode."""
    height, width = frames.shape[1:3]
    if mode == "frame":
        return frame_box(height, width)
    if mode == "simple_patch":
        return np.concatenate([patch_grid(height, width, r, c) for r, c in PATCH_GRIDS])
    appearance = np.zeros((0, 4), np.float32)
    if detections is not None:
        appearance = remove_covered(filter_detections(detections, params.score_thr, params.min_area), params.cover_thr)
    if mode == "obj_det":
        return appearance
    motion = motion_boxes(frames, appearance, params.area_thr, params.binary_thr, params.extend, params.blur_size,
                          wrap_uint8=params.motion_uint8_wrap)
    # Same dtype rule as the reference: float64 once integer motion boxes are appended.
    return np.concatenate([appearance, motion]) if len(motion) else appearance
