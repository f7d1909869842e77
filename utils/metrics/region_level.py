"""Region- and track-based detection criteria, RBDC and TBDC (Ramachandra & Jones, WACV 2020),
with the semantics of the widely used evaluation code released with Georgescu, Ionescu et al.'s work."""
from __future__ import annotations

import numpy as np


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


def detections_from_boxes(frame_index: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                          frame_video_idx: np.ndarray) -> np.ndarray:
    """Cubes as `rbdc_tbdc` detections: (N, 7) [video, frame in its video (0-based), x1, y1, x2, y2, score]
    in inclusive pixel coordinates (a cube crops [y1:y2, x1:x2] of its ceiled box)."""
    video = np.asarray(frame_video_idx)[frame_index]
    first_of_video = np.searchsorted(np.asarray(frame_video_idx), video)  # frame_video_idx is sorted
    corners = np.ceil(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    corners[:, 2:] -= 1
    return np.column_stack([video, frame_index - first_of_video, corners, scores]).astype(np.float64)
