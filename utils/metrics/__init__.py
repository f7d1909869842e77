"""Evaluation (stage 7): the numbers papers report, each computed as its reference code does.

    frame_level.py    micro/macro AUROC, EER (the paper's), AP, per-video table, smoothing
    pixel_level.py    pixel AUROC from the per-pixel max of box scores
    region_level.py   RBDC and TBDC (region- and track-based detection criteria)
    evaluate.py       every number of a test split's metrics.json, from the three above
    table.py          the one table of metric keys, report labels and summary names
"""
from utils.metrics.evaluate import evaluate_split
from utils.metrics.frame_level import (PROTOCOL, average_precision, evaluation_report, frame_auroc, macro_auroc,
                                       per_video_table, save_roc_pr_curve_data, smooth_scores)
from utils.metrics.pixel_level import pixel_auroc, pixel_score_map
from utils.metrics.region_level import rbdc_tbdc
from utils.metrics.table import METRICS, summary_line

__all__ = ["frame_auroc", "macro_auroc", "evaluation_report", "save_roc_pr_curve_data", "average_precision",
           "per_video_table", "smooth_scores", "PROTOCOL", "pixel_score_map", "pixel_auroc", "rbdc_tbdc",
           "evaluate_split", "METRICS", "summary_line"]
