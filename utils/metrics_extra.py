"""Evaluation beyond the paper's frame AUROC (issue 9): region/track detection criteria
(RBDC, TBDC), frame-level AP, pixel-level AUROC, temporal smoothing and per-video tables.

Library functions only: explicit arguments, numpy in and out. Nothing here is needed to
reproduce the paper's number, which stays `utils.metrics.frame_auroc` on unsmoothed scores.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

# The frame score of a frame without boxes (utils/scoring.py); repeated here so this module
# imports nothing from the project.
NO_BOX_SCORE = -100000.0

PROTOCOL = """\
Frame-level AUROC protocol.
micro: one ROC over all test frames of all videos concatenated. This is the number the
  paper (and the reference code) reports, and the one to compare with published results.
macro: the mean of per-video AUROCs. Videos whose frames are all normal (or all anomalous)
  are skipped, because AUROC is undefined with only one class; Avenue has two such test
  videos, so its macro mean is over the others. Macro weighs every video equally and is
  immune to score offsets between videos, so it is not comparable with micro numbers.
smoothing: temporally smoothed scores give an extra, labelled number; it never replaces
  the unsmoothed micro AUROC.
"""


# ----------------------------------------------------------------- RBDC / TBDC

def _box_iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (K, 4) boxes [x1, y1, x2, y2] with inclusive pixel coordinates."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1, 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def _frame_keys(video: np.ndarray, frame: np.ndarray, base: int) -> np.ndarray:
    return video.astype(np.int64) * base + frame.astype(np.int64)


def _cut_and_integrate(fpr: np.ndarray, *rates: np.ndarray) -> list[float]:
    """Keep the points up to the last one with fpr <= 1, extend it to fpr = 1, integrate."""
    end = int(np.flatnonzero(fpr <= 1)[-1]) + 1  # fpr[0] = 0, so there is one
    x = fpr[:end]
    ys = [r[:end] for r in rates]
    if x[-1] != 1:
        x = np.append(x, 1.0)
        ys = [np.append(y, y[-1]) for y in ys]
    return [float(np.trapezoid(y, x)) for y in ys]


def rbdc_tbdc(detections: np.ndarray, gt_regions: np.ndarray, num_frames: int,
              alpha: float = 0.1, beta: float = 0.1) -> tuple[float, float]:
    """Region- and track-based detection criteria (Ramachandra & Jones, WACV 2020).

    detections: (N, 7) [video, frame, x1, y1, x2, y2, score]; gt_regions: (M, 7)
    [video, frame, x1, y1, x2, y2, track_id], track ids unique over the test set;
    coordinates inclusive. A detection is a true positive for every region of its frame
    with IoU >= beta not matched by a higher-scored detection; it is a false positive
    only if it overlaps no region of its frame. A track counts as detected once at least
    alpha of its regions are matched. Both curves (x = false positives per frame) start
    at (0, 0), are cut at 1 false positive per frame (extended to it if they stop
    short) and integrated with the trapezoidal rule. Returns (RBDC, TBDC).
    """
    det = np.asarray(detections, dtype=np.float64).reshape(-1, 7)
    gt = np.asarray(gt_regions, dtype=np.float64).reshape(-1, 7)
    if len(gt) == 0:
        raise ValueError("rbdc_tbdc needs at least one ground-truth region")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, not {num_frames}")
    for name, column in (("video", 0), ("frame", 1)):
        for what, array in (("detections", det), ("gt_regions", gt)):
            values = array[:, column]
            if np.any(values < 0) or np.any(values != np.round(values)):
                raise ValueError(f"{what}: {name} numbers must be non-negative integers")
    n = len(det)

    # Descending score; a stable sort, so equal scores keep their input order (as the
    # widely used code's list.sort(reverse=True) does) -- the order changes the curve.
    det = det[np.argsort(-det[:, 6], kind="stable")]

    # Candidate (detection, region) pairs: the regions of the detection's own frame.
    # Group the regions by (video, frame) once; a binary search finds each detection's group.
    base = int(max(det[:, 1].max(initial=0), gt[:, 1].max())) + 1
    gt_keys = _frame_keys(gt[:, 0], gt[:, 1], base)
    gt_order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[gt_order]
    det_keys = _frame_keys(det[:, 0], det[:, 1], base)
    lo = np.searchsorted(sorted_keys, det_keys, side="left")
    hi = np.searchsorted(sorted_keys, det_keys, side="right")
    counts = hi - lo
    pair_det = np.repeat(np.arange(n), counts)  # detection ranks, ascending
    offsets = np.arange(len(pair_det)) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = gt_order[np.repeat(lo, counts) + offsets]
    overlap = _box_iou_inclusive(det[pair_det, 2:6], gt[pair_gt, 2:6]) >= beta
    pair_det, pair_gt = pair_det[overlap], pair_gt[overlap]

    false_pos = np.ones(n)
    false_pos[pair_det] = 0  # overlapping any region: never a false positive

    # Each region is matched by the first (highest-ranked) detection overlapping it.
    first = np.full(len(gt), n)  # n = never matched
    np.minimum.at(first, pair_gt, pair_det)
    matched = first < n
    true_pos = np.bincount(first[matched], minlength=n).astype(np.float64)

    # Track rate: a track is detected at the rank of its k-th match, k the smallest count
    # with k / len >= alpha (evaluated in floating point, as the ratio test is).
    track_ids, track_of = np.unique(gt[:, 6], return_inverse=True)
    n_tracks = len(track_ids)
    lengths = np.bincount(track_of, minlength=n_tracks)
    need = np.ceil(alpha * lengths).astype(np.int64)
    need[(need > 1) & ((need - 1) / lengths >= alpha)] -= 1
    need[need / lengths < alpha] += 1
    m_track, m_rank = track_of[matched], first[matched]
    by_track = np.lexsort((m_rank, m_track))
    m_track, m_rank = m_track[by_track], m_rank[by_track]
    position = np.arange(len(m_track)) - np.searchsorted(m_track, m_track, side="left")
    hit = position == need[m_track] - 1  # the k-th matched region of its track
    detected_at = np.bincount(m_rank[hit], minlength=n)[:n].astype(np.float64)
    if n:
        detected_at[0] += np.sum(need <= 0)  # alpha <= 0: every track counts from the first detection

    fpr = np.concatenate(([0.0], np.cumsum(false_pos))) / num_frames
    rbdr = np.concatenate(([0.0], np.cumsum(true_pos))) / len(gt)
    tbdr = np.concatenate(([0.0], np.cumsum(detected_at))) / n_tracks
    rbdc, tbdc = _cut_and_integrate(fpr, rbdr, tbdr)
    return rbdc, tbdc


# ----------------------------------------------------------------- frame-level AP

def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Frame-level average precision, anomalous frames (label 1) as the positive class."""
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    if not np.any(labels == 1):
        raise ValueError("average precision is undefined without anomalous frames")
    return float(average_precision_score(labels == 1, scores))


# ----------------------------------------------------------------- pixel level

def pixel_score_map(frame_size: tuple[int, int], boxes: np.ndarray, cube_scores: np.ndarray,
                    fill: float = NO_BOX_SCORE) -> np.ndarray:
    """Per-pixel max of the scores of the boxes covering each pixel; `fill` elsewhere.

    Boxes are ceiled to ints and painted as [y1:y2, x1:x2], numpy slicing included, as
    `utils.scoring.pixel_score_map` and the reference do.
    """
    score_map = np.full(frame_size, fill, dtype=np.float64)
    for box, score in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.ravel(cube_scores)):
        x1, y1, x2, y2 = (int(math.ceil(v)) for v in box)
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


# ----------------------------------------------------------------- smoothing, per-video tables

def smooth_scores(scores: np.ndarray, frame_video_idx: np.ndarray, sigma: float,
                  mode: str = "reflect") -> np.ndarray:
    """Gaussian smoothing of frame scores along time, each video on its own.

    scipy.ndimage.gaussian_filter1d with `mode` ('reflect', scipy's default, mirrors the
    video's end frames) and truncate=4. Frames scored NO_BOX_SCORE (no box) first take the
    lowest real score of their video, so the sentinel does not drag neighbours down by
    1e5; they then smooth like any frame (the sentinel is not restored). A video with no
    real score keeps its values. sigma = 0 returns the scores unchanged (as float64).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    videos = np.asarray(frame_video_idx).ravel()
    if len(scores) != len(videos):
        raise ValueError(f"{len(scores)} scores for {len(videos)} frame video indices")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, not {sigma}")
    result = scores.copy()
    if sigma == 0:
        return result
    for video in np.unique(videos):
        idx = np.flatnonzero(videos == video)
        values = scores[idx]
        no_box = values == NO_BOX_SCORE
        if no_box.all():
            continue
        values = np.where(no_box, values[~no_box].min(), values)
        result[idx] = gaussian_filter1d(values, sigma, mode=mode)
    return result


def per_video_table(scores: np.ndarray, labels: np.ndarray, frame_video_idx: np.ndarray,
                    video_names: Sequence[str]) -> list[dict]:
    """One row per video: name, frames, anomalous frames, AUROC and AP (None for one class).

    frame_video_idx is 1-based (video_names[v - 1] names video v), as in utils.datasets.
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    videos = np.asarray(frame_video_idx).ravel()
    rows = []
    for video in np.unique(videos):
        inside = videos == video
        video_scores, positive = scores[inside], labels[inside] == 1
        both = 0 < positive.sum() < len(positive)
        rows.append({"video": video_names[int(video) - 1], "frames": int(inside.sum()),
                     "anomalous_frames": int(positive.sum()),
                     "auroc": float(roc_auc_score(positive, video_scores)) if both else None,
                     "ap": float(average_precision_score(positive, video_scores)) if both else None})
    return rows
