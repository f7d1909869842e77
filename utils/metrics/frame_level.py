"""Frame-level evaluation (docs/method.md §7): AUROC and EER as the reference computes them,
and what later papers add: average precision, per-video tables, temporal smoothing."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from utils.metrics.table import SMOOTHED, SMOOTHED_KEYS
from utils.scoring import NO_BOX_SCORE


def _ordered(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Negatives first, then positives: the order the reference feeds to sklearn (ties depend on it)."""
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels).ravel()
    negatives, positives = scores[labels != 1], scores[labels == 1]
    truth = np.concatenate([np.zeros_like(negatives), np.ones_like(positives)])
    return truth, np.concatenate([negatives, positives])


def frame_auroc(scores, labels) -> tuple[float, float, float]:
    """(AUROC, EER1, EER2): EER1 is the false-positive rate and EER2 the miss rate at the
    ROC point where the two are closest."""
    truth, preds = _ordered(scores, labels)
    fpr, tpr, _ = roc_curve(truth, preds)
    fnr = 1 - tpr
    closest = np.nanargmin(np.abs(fnr - fpr))
    return float(auc(fpr, tpr)), float(fpr[closest]), float(fnr[closest])


def save_roc_pr_curve_data(scores, labels, file_path: Path) -> float:
    """The reference's curve file (ROC and both PR curves) as `.npz`; returns the AUROC."""
    truth, preds = _ordered(scores, labels)
    fpr, tpr, roc_thresholds = roc_curve(truth, preds)
    precision_norm, recall_norm, pr_thresholds_norm = precision_recall_curve(truth, preds)
    precision_anom, recall_anom, pr_thresholds_anom = precision_recall_curve(truth, -preds, pos_label=0)
    roc_auc = auc(fpr, tpr)
    np.savez_compressed(file_path, preds=preds, truth=truth, fpr=fpr, tpr=tpr, roc_thresholds=roc_thresholds,
                        roc_auc=roc_auc, precision_norm=precision_norm, recall_norm=recall_norm,
                        pr_thresholds_norm=pr_thresholds_norm, pr_auc_norm=auc(recall_norm, precision_norm),
                        precision_anom=precision_anom, recall_anom=recall_anom,
                        pr_thresholds_anom=pr_thresholds_anom, pr_auc_anom=auc(recall_anom, precision_anom))
    return float(roc_auc)


def macro_auroc(scores, labels, frame_video_idx) -> float:
    """Mean of per-video AUROCs over the videos that contain both classes."""
    scores, labels, videos = (np.asarray(a) for a in (scores, labels, frame_video_idx))
    per_video = [frame_auroc(scores[videos == v], labels[videos == v])[0]
                 for v in np.unique(videos) if 0 < labels[videos == v].sum() < (videos == v).sum()]
    return float(np.mean(per_video)) if per_video else float("nan")


def evaluation_report(scores, labels, frame_video_idx, smoothing_sigma: float = 0.0) -> dict:
    """The frame-level numbers; with smoothing_sigma > 0 also the same numbers on smoothed
    scores, under their own `*_smoothed` names (the unsmoothed ones stay the paper's)."""
    auroc, eer_fpr, eer_fnr = frame_auroc(scores, labels)
    videos = np.asarray(frame_video_idx)
    both_classes = [v for v in np.unique(videos) if 0 < np.sum(np.asarray(labels)[videos == v]) < np.sum(videos == v)]
    report = {"auroc_micro": auroc, "auroc_macro": macro_auroc(scores, labels, frame_video_idx),
              "average_precision": average_precision(scores, labels),
              "eer": (eer_fpr + eer_fnr) / 2, "eer_fpr": eer_fpr, "eer_fnr": eer_fnr,
              "n_frames": int(len(scores)), "n_anomalous_frames": int(np.sum(np.asarray(labels) == 1)),
              "n_videos": int(len(np.unique(videos))), "n_videos_in_macro": len(both_classes),
              "smoothing_sigma": float(smoothing_sigma)}
    if smoothing_sigma > 0:
        smoothed = evaluation_report(smooth_scores(scores, frame_video_idx, smoothing_sigma), labels, frame_video_idx)
        report.update({key: smoothed[key.removesuffix(SMOOTHED)] for key in SMOOTHED_KEYS})
    return report


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


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Frame-level average precision, anomalous frames (label 1) as the positive class."""
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    if not np.any(labels == 1):
        raise ValueError("average precision is undefined without anomalous frames")
    return float(average_precision_score(labels == 1, scores))


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
