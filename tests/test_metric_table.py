"""The one table of metrics (utils/metrics/table.py) against what reads it: the README's table of
metrics.json keys, test.py's summary line, report.html's rows and the metrics an evaluation returns."""
import fnmatch
import re

import numpy as np

from tests.conftest import REPO
from utils.metrics import METRICS, evaluate_split, summary_line
from utils.report import write_report

TABLE_KEYS = [metric.key for metric in METRICS]


def readme_metric_keys() -> list[str]:
    """The names in the first column of the README's table of metrics.json keys (section "What the main
    job prints and writes"), as written: `eer` (`eer_fpr`, `eer_fnr`) gives three, `*_smoothed` one pattern."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## What the main job prints and writes\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| key in `metrics.json`"))
    names = []
    for line in lines[header + 2:]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def test_readme_names_every_key_of_the_metric_table_and_no_other():
    named = set()
    for name in readme_metric_keys():
        matches = fnmatch.filter(TABLE_KEYS, name)
        assert matches, f"README.md names `{name}`, which is no key of utils/metrics/table.py"
        named.update(matches)
    assert not set(TABLE_KEYS) - named, f"README.md does not name {sorted(set(TABLE_KEYS) - named)}"
    assert len(TABLE_KEYS) == len(set(TABLE_KEYS))


def test_summary_line_names_the_metrics_that_have_a_value():
    report = {"n_frames": 24, "n_cubes": 98, "auroc_micro": 0.9161, "auroc_macro": 0.90712, "average_precision": 0.95,
              "eer": 0.04551, "pixel_auroc": None, "rbdc": 0.80684, "tbdc": None}
    assert summary_line(report) == "24 test frames, 98 cubes; macro AUROC 0.9071, AP 0.9500, EER 0.0455, RBDC 0.8068"
    report.update(pixel_auroc=0.91534, tbdc=1.0, auroc_macro=float("nan"))
    assert summary_line(report) == ("24 test frames, 98 cubes; macro AUROC nan, AP 0.9500, EER 0.0455, "
                                    "pixel AUROC 0.9153, RBDC 0.8068, TBDC 1.0000")


def test_evaluation_returns_every_key_of_the_table(tmp_path):
    """Scores of two videos with both classes, smoothing on, no pixel masks and no region ground truth:
    every key of the table is in the metrics (pixel and region ones None, with the reason)."""
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.1, 0.2, 0.7])
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 0])
    videos = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    boxes = np.array([[0, 0, 4, 4], [2, 2, 6, 6]], dtype=np.float64)
    metrics = evaluate_split(scores, labels, videos, smoothing_sigma=1.0, frame_size=(8, 8),
                             frame_index=np.array([1, 4]), boxes=boxes, cube_scores=np.array([0.9, 0.8]),
                             read_mask=None, region_dir=tmp_path / "region_ground_truth", video_names=["a", "b"])
    assert set(TABLE_KEYS) <= set(metrics), sorted(set(TABLE_KEYS) - set(metrics))
    assert metrics["pixel_auroc"] is metrics["rbdc"] is metrics["tbdc"] is None
    assert "not found" in metrics["region_ground_truth"]


def test_report_shows_the_labelled_metrics_in_table_order(tmp_path):
    metrics = {key: 0.5 for key in TABLE_KEYS} | {"n_frames": 8, "n_anomalous_frames": 3, "n_videos": 2,
                                                  "n_cubes": 2}
    page = write_report(tmp_path / "report.html", title="t", metrics=metrics, protocol="p", per_video=[],
                        roc_image="roc.png", video_images=[]).read_text(encoding="utf-8")
    shown = re.findall(r"<td><code>([^<]+)</code></td>", page)
    assert shown == [metric.key for metric in METRICS if metric.label is not None]
    assert "eer_fpr" not in shown and "auroc_micro_smoothed" in shown
