"""The one table of metrics: every metric key of metrics.json, how report.html labels it and how
test.py's summary line names it. report.html, the summary line and the smoothed keys of metrics.json
are built from it; the README's table of metrics.json keys is checked against it (tests/test_metric_table.py).

    Metric          one row: key, report label, summary name
    METRICS         the rows, in the order the report and the summary line show them
    SMOOTHED_KEYS   the `*_smoothed` keys, in the order metrics.json holds them
    summary_line    test.py's line of counts and metrics
"""
from __future__ import annotations

from dataclasses import dataclass

SMOOTHED = "_smoothed"


@dataclass(frozen=True)
class Metric:
    key: str  # its key in metrics.json
    label: str | None = None  # its row in report.html; None: in metrics.json only
    summary: str | None = None  # its name in test.py's summary line; None: not in the line


METRICS = (
    Metric("auroc_micro", "frame AUROC, micro (the paper's number)"),  # test.py prints it on a line of its own
    Metric("auroc_macro", "frame AUROC, macro (mean over videos with both classes)", "macro AUROC"),
    Metric("average_precision", "frame average precision (anomalous = positive)", "AP"),
    Metric("eer", "equal error rate", "EER"),
    Metric("eer_fpr"),
    Metric("eer_fnr"),
    Metric("pixel_auroc", "pixel AUROC (per-pixel max of box scores)", "pixel AUROC"),
    Metric("rbdc", "RBDC (region-based detection criterion, α = β = 0.1)", "RBDC"),
    Metric("tbdc", "TBDC (track-based detection criterion, α = β = 0.1)", "TBDC"),
    Metric("auroc_micro" + SMOOTHED, "frame AUROC, micro, temporally smoothed"),
    Metric("auroc_macro" + SMOOTHED, "frame AUROC, macro, temporally smoothed"),
    Metric("average_precision" + SMOOTHED, "average precision, temporally smoothed"),
    Metric("eer" + SMOOTHED),
)

SMOOTHED_KEYS = tuple(metric.key for metric in METRICS if metric.key.endswith(SMOOTHED))


def summary_line(report: dict) -> str:
    """'<n> test frames, <n> cubes; macro AUROC x, AP x, EER x[, pixel AUROC x, RBDC x, TBDC x]': the
    summary metrics that have a value (pixel and region ones are None without their ground truth)."""
    values = ", ".join(f"{metric.summary} {report[metric.key]:.4f}" for metric in METRICS
                       if metric.summary is not None and report.get(metric.key) is not None)
    return f"{report['n_frames']} test frames, {report['n_cubes']} cubes; {values}"
