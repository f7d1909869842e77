"""Frame AUROC / EER and the curve file equal the reference's (golden metrics)."""
from pathlib import Path

import numpy as np
import pytest

from utils.metrics import evaluation_report, frame_auroc, macro_auroc, save_roc_pr_curve_data

DATA = Path(__file__).parent / "data"


@pytest.mark.parity
def test_frame_auroc_matches_reference():
    g = np.load(DATA / "metrics.npz")
    auc, eer1, eer2 = frame_auroc(g["scores"], g["labels"])
    assert abs(auc - g["auc"]) < 1e-9 and abs(eer1 - g["eer1"]) < 1e-9 and abs(eer2 - g["eer2"]) < 1e-9


@pytest.mark.parity
def test_saved_curves_match_reference(tmp_path):
    g = np.load(DATA / "metrics.npz")
    expected = np.load(DATA / "metrics_saved.npz")
    auc = save_roc_pr_curve_data(g["scores"], g["labels"], tmp_path / "curves.npz")
    saved = np.load(tmp_path / "curves.npz")
    assert abs(auc - float(expected["roc_auc"])) < 1e-9
    for key in expected.files:
        np.testing.assert_allclose(saved[key], expected[key], atol=1e-9, rtol=0, err_msg=key)


def test_macro_auroc_averages_videos_with_both_classes():
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.5])
    labels = np.array([0, 1, 1, 0, 0, 0, 0])
    videos = np.array([1, 1, 2, 2, 3, 3, 3])  # video 3 has no anomaly: left out
    assert macro_auroc(scores, labels, videos) == 0.5
    report = evaluation_report(scores, labels, videos)
    assert report["n_frames"] == 7 and report["n_anomalous_frames"] == 2
