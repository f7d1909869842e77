"""Every number test.py reports, and report.html rendered in a real headless browser (Debian's chromium)."""
import csv
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from utils.metrics import evaluation_report, frame_auroc
from utils.metrics.pixel_level import pixel_auroc_of_frames
from utils.metrics.region_level import detections_from_boxes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def results(scored_run):
    """test.py's results folder of the session's prepared run (2 test videos, nf 2, one epoch,
    smoothing_sigma = 2 as config.cfg sets it for the synthetic set): tests/conftest.py. Read only."""
    return scored_run.root / "results" / "synthetic"


@pytest.mark.slow
def test_metrics_json_has_every_number_labelled(results):
    folder = results
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("auroc_micro", "auroc_macro", "average_precision", "eer", "pixel_auroc", "rbdc", "tbdc",
                "auroc_micro_smoothed", "auroc_macro_smoothed", "average_precision_smoothed", "protocol"):
        assert key in metrics, key
    for key in ("average_precision", "pixel_auroc", "rbdc", "tbdc"):
        assert 0 <= metrics[key] <= 1, (key, metrics[key])
    scores, labels = np.load(folder / "frame_scores.npy"), np.load(folder / "frame_labels.npy")
    assert metrics["auroc_micro"] == frame_auroc(scores, labels)[0]  # smoothing never replaces the paper's number
    assert metrics["auroc_micro_smoothed"] != metrics["auroc_micro"]
    assert "micro" in metrics["protocol"] and "skipped" in metrics["protocol"]
    rows = list(csv.DictReader((folder / "per_video.csv").open()))
    assert [r["video"] for r in rows] == ["Test001", "Test002"]
    assert sum(int(r["frames"]) for r in rows) == metrics["n_frames"] == len(scores)


def test_smoothed_numbers_sit_beside_the_unsmoothed_ones():
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.1, 0.2, 0.7])
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 0])
    videos = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    plain = evaluation_report(scores, labels, videos)
    smoothed = evaluation_report(scores, labels, videos, smoothing_sigma=1.0)
    assert "auroc_micro_smoothed" not in plain and plain["smoothing_sigma"] == 0
    assert {k: smoothed[k] for k in plain if k != "smoothing_sigma"} == {k: plain[k] for k in plain
                                                                        if k != "smoothing_sigma"}
    assert smoothed["auroc_micro_smoothed"] != smoothed["auroc_micro"] and smoothed["n_videos_in_macro"] == 2


def test_cubes_become_inclusive_detections_numbered_within_their_video():
    frame_video_idx = np.array([1, 1, 1, 2, 2])
    boxes = np.array([[10.2, 20, 30, 40.5], [0, 0, 5, 5]])
    detections = detections_from_boxes(np.array([1, 4]), boxes, np.array([0.7, -1.0]), frame_video_idx)
    # frame 1 is video 1's second frame; frame 4 is video 2's second; boxes ceiled, ends made inclusive
    np.testing.assert_array_equal(detections, [[1, 1, 11, 20, 29, 40, 0.7], [2, 1, 0, 0, 4, 4, -1.0]])


def test_pixel_auroc_of_frames_equals_sklearn_on_painted_maps():
    frame_index = np.array([0, 0, 2])
    boxes = np.array([[0, 0, 2, 2], [1, 1, 4, 3], [2, 0, 4, 2]])
    cube_scores = np.array([1.0, 3.0, 2.0])
    masks = [np.zeros((3, 4), bool) for _ in range(3)]
    masks[0][1:3, 1:4] = True
    masks[2][0, 0] = True
    maps = np.full((3, 3, 4), -100000.0)  # painted by hand: per-pixel max of the covering boxes
    maps[0, 0:2, 0:2] = 1.0
    maps[0, 1:3, 1:4] = 3.0
    maps[2, 0:2, 2:4] = 2.0
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), maps.ravel())
    assert pixel_auroc_of_frames((3, 4), frame_index, boxes, cube_scores, iter(masks)) == pytest.approx(expected)


def _chromium(*args, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=timeout)


IMAGE_PROBE = """<!DOCTYPE html><html><body>
<iframe id="page" src="report.html" style="width:1200px;height:900px"></iframe><pre id="out">pending</pre>
<script>
document.getElementById("page").onload = () => {
  const images = [...document.getElementById("page").contentDocument.images];
  Promise.all(images.map(i => i.complete ? null : new Promise(done => { i.onload = i.onerror = done; })))
    .then(() => { document.getElementById("out").textContent =
      JSON.stringify(images.map(i => [i.getAttribute("src"), i.naturalWidth])); });
};
</script></body></html>"""


def _loaded_images(folder):
    """[(src, naturalWidth)] of every <img> of report.html once loaded, read back from the browser's DOM."""
    probe = folder / "probe.html"
    probe.write_text(IMAGE_PROBE)
    done = _chromium("--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    probe.unlink()
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "pending", done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_a_browser_with_every_image(results, tmp_path):
    folder = tmp_path / "results"  # a copy: the shared results stay as test.py wrote them
    shutil.copytree(results, folder)
    html = (folder / "report.html").read_text()
    assert "<script" not in html.lower() and "http" not in html  # static and self-contained
    shot = tmp_path / "report.png"
    _chromium("--window-size=1200,1600", f"--screenshot={shot}", (folder / "report.html").as_uri())
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert (image < 240).any(axis=2).mean() > 0.05 and image.std() > 20  # text, tables and figures, not blank

    images = _loaded_images(folder)
    assert len(images) == 1 + 2 * 2  # the ROC curve, and per video its score curve and top frame
    assert all(width > 0 for _, width in images), images

    broken = folder / "report_files" / "Test002_top.png"  # the check must notice a missing picture
    kept = broken.read_bytes()
    broken.unlink()
    try:
        assert dict(_loaded_images(folder))["report_files/Test002_top.png"] == 0
    finally:
        broken.write_bytes(kept)
