"""Pixel-level AUROC from the per-pixel maximum of box scores (what the reference paints per frame)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from utils.cubes import ceil_box
from utils.scoring import NO_BOX_SCORE


def pixel_score_map(frame_size: tuple[int, int], boxes: np.ndarray, cube_scores: np.ndarray,
                    fill: float = NO_BOX_SCORE) -> np.ndarray:
    """Per-pixel max of the scores of the boxes covering each pixel; `fill` elsewhere.

    Boxes are ceiled to ints and painted as [y1:y2, x1:x2], numpy slicing included, as
    `utils.scoring.pixel_score_map` and the reference do.
    """
    score_map = np.full(frame_size, fill, dtype=np.float64)
    for box, score in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.ravel(cube_scores)):
        x1, y1, x2, y2 = ceil_box(box)
        region = score_map[y1:y2, x1:x2]
        np.maximum(region, score, out=region)
    return score_map


def _merge_counts(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.concatenate([p[0] for p in parts])
    unique, inverse = np.unique(values, return_inverse=True)
    pos = np.bincount(inverse, weights=np.concatenate([p[1] for p in parts]), minlength=len(unique))
    neg = np.bincount(inverse, weights=np.concatenate([p[2] for p in parts]), minlength=len(unique))
    return unique, pos, neg


def pixel_auroc(score_maps: Iterable, masks: Iterable | None = None, *, merge_every: int = 1_000_000) -> float:
    """Pixel-level AUROC over all pixels of all frames, exact, ties counted as sklearn does.

    Give the frames as two iterables (score maps, masks; stacked arrays work) or, with
    masks=None, one iterable of (score_map, mask) pairs; a mask pixel > 0 is anomalous.
    Memory: frames are streamed and reduced to (value -> anomalous, normal pixel counts),
    so it grows with the number of distinct score values (a few per frame for box maps),
    not with the number of pixels. Counts are exact in float64 below 2**53 pixels.
    """
    pairs = zip(score_maps, masks) if masks is not None else score_maps
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    buffered = 0
    for score_map, mask in pairs:
        score_map, mask = np.asarray(score_map), np.asarray(mask)
        if score_map.shape != mask.shape:
            raise ValueError(f"score map {score_map.shape} and mask {mask.shape} differ in shape")
        if np.isnan(score_map).any():
            raise ValueError("score map contains NaN")
        values, anomalous = score_map.ravel(), mask.ravel() > 0
        # Two plain sorts (np.unique with counts) are an order of magnitude faster than one
        # argsort (return_inverse) on maps with few distinct values.
        pos_values, pos_counts = np.unique(values[anomalous], return_counts=True)
        neg_values, neg_counts = np.unique(values[~anomalous], return_counts=True)
        parts.append((np.concatenate([pos_values, neg_values]),
                      np.concatenate([pos_counts, np.zeros(len(neg_counts), np.int64)]),
                      np.concatenate([np.zeros(len(pos_counts), np.int64), neg_counts])))
        buffered += len(pos_values) + len(neg_values)
        if buffered > merge_every:  # keep the buffer small when maps have many distinct values
            parts = [_merge_counts(parts)]
            buffered = len(parts[0][0])
    if not parts:
        raise ValueError("pixel_auroc needs at least one frame")
    values, pos, neg = _merge_counts(parts)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("pixel AUROC is undefined unless both normal and anomalous pixels exist")
    # ROC points by descending threshold, one per distinct value (ties form one step):
    # area = sum of trapezoids = P(pos > neg) + P(pos == neg) / 2.
    tp = np.concatenate(([0.0], np.cumsum(pos[::-1])))
    fp = np.concatenate(([0.0], np.cumsum(neg[::-1])))
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]) / 2) / (n_pos * n_neg))


def pixel_auroc_of_frames(frame_size: tuple[int, int], frame_index: np.ndarray, boxes: np.ndarray,
                          cube_scores: np.ndarray, masks: Iterable[np.ndarray]) -> float:
    """Pixel AUROC of a test split, one frame at a time: `masks` yields frame 0, 1, … 's mask and
    frame i's score map paints the boxes of the cubes with frame_index == i."""
    order = np.argsort(frame_index, kind="stable")
    sorted_index = np.asarray(frame_index)[order]

    def pairs():
        for i, mask in enumerate(masks):
            first, last = np.searchsorted(sorted_index, [i, i + 1])
            mine = order[first:last]
            yield pixel_score_map(frame_size, boxes[mine], cube_scores[mine]), mask

    return pixel_auroc(pairs())
