"""Every number test.py reports, and report.html rendered in a real headless browser (Debian's chromium)."""
import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import write_config
from utils.config import load_config
from utils.metrics import evaluation_report, frame_auroc
from utils.metrics.pixel_level import pixel_auroc_of_frames
from utils.metrics.region_level import detections_from_boxes
from utils.pipeline import run_testing, run_training
from utils.report import write_report

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


# ---- every name and string on the page is escaped ------------------------------------------------

ODD = 'Test003 <b>&amp; "x"'  # a tag, an entity-looking '&' and quotes in a video's name


class _Page(HTMLParser):
    """The tags, image sources and text of a page as a browser's parser sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.sources, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.sources.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_escapes_names_paths_and_notes(tmp_path):
    folder = 'raw <i>&"'
    notes = [f"RBDC / TBDC: no region ground truth ({folder}/x not found)"]
    page = write_report(tmp_path / "report.html", title=f"VEC on {ODD}", protocol="micro <AUROC> & more",
                        metrics={"auroc_micro": 0.5, "n_frames": 3, "n_anomalous_frames": 1, "n_videos": 1,
                                 "n_cubes": 2, "dataset": ODD, "model": {"path": folder}},
                        per_video=[{"video": ODD, "frames": 3, "anomalous_frames": 1, "auroc": 0.5, "ap": None}],
                        roc_image="roc.png", video_images=[(ODD, f"report_files/{ODD}#?_scores.png",
                                                            f"report_files/{ODD}%_top.png")], notes=notes)
    parsed = _parse(page)
    assert "b" not in parsed.tags and "i" not in parsed.tags and "script" not in parsed.tags
    assert parsed.tags.count("img") == 3
    text = "".join(parsed.text)
    assert f"VEC on {ODD}" in text and text.count(ODD) >= 3 and notes[0] in text and "micro <AUROC> & more" in text
    assert json.dumps(folder)[1:-1] in text  # the settings block: the JSON of the path, shown as it is
    # Image paths survive as paths: '#', '?' and '%' are part of the file name, not a fragment or a query.
    assert not [src for src in parsed.sources if set(src) & set('#?<>"& ')]
    assert [unquote(src) for src in parsed.sources] == ["roc.png", f"report_files/{ODD}#?_scores.png",
                                                        f"report_files/{ODD}%_top.png"]


@pytest.mark.slow
def test_report_of_a_dataset_with_odd_names_shows_them_and_finds_its_images(small_synthetic, tmp_path):
    """test.py's report for a video called `Test003 <b>&amp; "x"` in a dataset folder called `raw <i>&"`."""
    raw = tmp_path / 'raw <i>&"'
    shutil.copytree(small_synthetic.raw_dataset_dir, raw)
    shutil.copytree(small_synthetic.optical_flow_dir, tmp_path / "optical_flow")
    test_dir, flow_dir = raw / "synthetic" / "Test", tmp_path / "optical_flow" / "synthetic" / "Test"
    for folder in (test_dir, flow_dir):
        (folder / "Test003").rename(folder / ODD)
    (test_dir / "Test003_gt").rename(test_dir / f"{ODD}_gt")
    shutil.rmtree(raw / "synthetic" / "region_ground_truth")  # so the report notes the (odd) folder it looked in
    cfg = load_config(write_config(tmp_path, raw_dataset_dir=raw.name), ["synthetic.nf=2", "synthetic.epochs=1"])
    run_training(cfg)
    run_testing(cfg)
    report = tmp_path / "results" / "synthetic" / "report.html"
    parsed = _parse(report)
    assert "b" not in parsed.tags and "i" not in parsed.tags
    text = "".join(parsed.text)
    assert ODD in text and f"{raw / 'synthetic' / 'region_ground_truth'} not found" in text
    assert len(parsed.sources) == 1 + 2 * 3
    for src in parsed.sources:
        assert (report.parent / unquote(src)).is_file(), src
