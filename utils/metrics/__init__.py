"""Evaluation (stage 7): the numbers papers report, computed as the reference computes them."""
from utils.metrics.frame_level import evaluation_report, frame_auroc, macro_auroc, save_roc_pr_curve_data

__all__ = ["frame_auroc", "macro_auroc", "evaluation_report", "save_roc_pr_curve_data"]
