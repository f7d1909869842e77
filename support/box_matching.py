"""Compare two detection lists as SETS of boxes, not by rank position.

Float32 results differ in their last bits between CPU instruction sets (AVX-512, AVX2, SSE),
thread counts and precisions. Wherever a network ends in a discrete decision (top-k cut, NMS,
sorting by score), near-tied boxes may then swap places or one box at the edge of the list may
be replaced by its near-tied neighbour. A rank-by-rank comparison turns that into a difference
although the boxes are the same; a one-to-one matching does not.

`match_boxes` pairs boxes by a linear assignment that maximises the total IoU over the pairs
allowed (same label, IoU >= `min_iou`, scores within tolerance). The parity tests assert on it
(tests/matching.py); benchmarks/precision.py reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou


@dataclass
class Matching:
    actual: np.ndarray  # indices into the actual list, one per pair
    expected: np.ndarray  # indices into the expected list, same length
    unmatched_actual: np.ndarray
    unmatched_expected: np.ndarray
    max_box_diff: float  # largest |coordinate difference| over the pairs (0 when there are none)
    max_score_diff: float
    ious: np.ndarray  # IoU of each pair (1 where all coordinates agree within coord_atol)


def as_boxes(boxes) -> torch.Tensor:
    return torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


def match_boxes(actual_boxes, expected_boxes, actual_scores=None, expected_scores=None, actual_labels=None,
                expected_labels=None, min_iou: float = 0.99, score_rtol: float = 0.0, score_atol: float = 0.0,
                coord_atol: float = 0.0) -> Matching:
    """One-to-one matching of two box lists ((N, 4) x1, y1, x2, y2).

    A pair is allowed when its IoU is at least `min_iou` or all its coordinates agree within `coord_atol`,
    its labels are equal (when given) and |score difference| <= score_atol + score_rtol * |expected score|
    (when scores are given). The matching has as many pairs as possible and, among those, the largest total
    IoU (then the smallest coordinate differences)."""
    a, e = as_boxes(actual_boxes), as_boxes(expected_boxes)
    iou = box_iou(a, e).numpy() if len(a) and len(e) else np.zeros((len(a), len(e)))
    iou = np.nan_to_num(iou, nan=0.0)
    # IoU is ill-conditioned for thin boxes (0.004 px of noise moves a 0.13 px wide box's IoU to 0.95) and
    # undefined for boxes clipped flat against the image border: a pair whose coordinates all agree within
    # `coord_atol` counts as overlapping fully.
    linf = np.abs(a.numpy()[:, None, :] - e.numpy()[None, :, :]).max(-1) if iou.size else iou
    iou = np.where(linf <= coord_atol, 1.0, iou)
    allowed = iou >= min_iou
    if actual_scores is not None and expected_scores is not None:
        sa = np.asarray(actual_scores, np.float64).reshape(-1)
        se = np.asarray(expected_scores, np.float64).reshape(-1)
        allowed &= np.abs(sa[:, None] - se[None, :]) <= score_atol + score_rtol * np.abs(se)[None, :]
    if actual_labels is not None and expected_labels is not None:
        allowed &= np.asarray(actual_labels).reshape(-1)[:, None] == np.asarray(expected_labels).reshape(-1)[None, :]
    # A disallowed pair costs more than all allowed pairs together, so the assignment first maximises the
    # number of allowed pairs; disallowed ones it had to make are dropped afterwards.
    cost = np.where(allowed, 1.0 - iou + 1e-6 * linf / (1.0 + linf), 2.0 + len(a) + len(e))
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.zeros(0, int), np.zeros(0, int))
    keep = allowed[rows, cols]
    rows, cols = rows[keep], cols[keep]
    box_diff = float(np.abs(a.numpy()[rows] - e.numpy()[cols]).max()) if len(rows) else 0.0
    score_diff = 0.0
    if actual_scores is not None and expected_scores is not None and len(rows):
        score_diff = float(np.abs(sa[rows] - se[cols]).max())
    return Matching(rows, cols, np.setdiff1d(np.arange(len(a)), rows), np.setdiff1d(np.arange(len(e)), cols),
                    box_diff, score_diff, iou[rows, cols])

