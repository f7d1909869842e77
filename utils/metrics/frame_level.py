"""Frame-level evaluation (docs/method.md §7): AUROC and EER as the reference computes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_curve


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


def evaluation_report(scores, labels, frame_video_idx) -> dict:
    auroc, eer_fpr, eer_fnr = frame_auroc(scores, labels)
    return {"auroc_micro": auroc, "auroc_macro": macro_auroc(scores, labels, frame_video_idx),
            "eer": (eer_fpr + eer_fnr) / 2, "eer_fpr": eer_fpr, "eer_fnr": eer_fnr,
            "n_frames": int(len(scores)), "n_anomalous_frames": int(np.sum(np.asarray(labels) == 1))}
