"""The speed benchmark's parts: its synthetic inputs are what the pipeline reads, its variants compute what the
reference path computes, and its harness compares variants fairly."""
import sys

import numpy as np
import pytest
import torch

from benchmarks import harness, synthetic
from benchmarks.rows import cloze, memory
from utils.config import BoxParams
from utils.cubes import CubeStore
from utils.foreground import compute_split_boxes


def test_sampled_boxes_follow_the_reference_statistics():
    stats = synthetic.DATASETS["avenue"]
    boxes = synthetic.sample_boxes(stats, 3000, np.random.default_rng(0))
    counts = np.array([len(b) for b in boxes])
    every = np.concatenate(boxes)
    assert abs(counts.mean() - stats["count"][0]) < 0.3
    assert abs(np.log(every[:, 2] - every[:, 0]).mean() - stats["log_w"][0]) < 0.05
    assert every[:, :2].min() >= 0 and every[:, 2].max() <= 640 and every[:, 3].max() <= 360


def test_blob_video_gives_about_the_reference_boxes_per_frame(tmp_path):
    stats = synthetic.DATASETS["UCSDped2"]
    split = synthetic.write_blob_video(tmp_path, "UCSDped2", 8)
    assert split.read_frame(0).shape == (240, 360, 3) and len(split) == 8
    boxes = compute_split_boxes(split, "obj_det_with_motion", BoxParams(**stats["box_params"]), None, progress=False)
    assert 0.7 * stats["count"][0] < np.mean([len(b) for b in boxes]) < 1.4 * stats["count"][0]


@pytest.mark.slow
def test_synthetic_store_opens_and_trains(tmp_path):
    synthetic.write_synthetic_store(tmp_path / "store", 300)
    store = CubeStore.open(tmp_path / "store")
    assert len(store) == 300 and store.raw.shape == (300, 5, 3, 32, 32) and store.flow.shape == (300, 5, 2, 32, 32)
    assert np.all(np.diff(store.frame_index) >= 0) and len(store.block_members(0, 0)) == 300
    assert store.boxes[:, 2].max() <= 856 and store.boxes[:, 3].max() <= 480
    assert store.raw[-1].std() > 50 and 1.5 < store.flow[-1].std() < 2.5  # rows written up to the last
    report = memory.train_and_score(str(tmp_path / "store"), "cpu", 2, 16, 2, 40)
    assert report["cubes"] == 300 and report["trained_on"] == 32 and report["scored"] == 40


@pytest.mark.slow
def test_cloze_variants_compute_what_the_reference_computes():
    """The check the cloze row runs before timing: each variant's per-cube errors, training losses and errors after
    3 Adam steps, from the reference's weights, against the reference path's (tiny networks, fp32 variants)."""
    names = ["reference_cl", "grouped_cl", "sequential_cl", "threads_unfused", "default"]
    differences = cloze.check_outputs(names, "full", nf=2, padding=False, batch=4, device=torch.device("cpu"))
    for name, (before, losses, after) in differences.items():
        assert before < 1e-4 and losses < 1e-4 and after < 1e-2, name


def test_ratio_is_the_median_of_ratios_within_repeats_and_variants_alternate_order():
    order = []
    steps = {name: (lambda name=name: order.append(name)) for name in ("reference", "fast")}
    results = harness.interleaved("cloze", "train cubes/s", steps, 1, torch.device("cpu"), warmup=0, repeats=3)
    assert order == ["reference", "fast", "fast", "reference", "reference", "fast"]
    assert [r.variant for r in results] == ["reference", "fast"] and all(len(r.rates) == 3 for r in results)
    # The machine's speed drifts 4x between moments; within two of the three repeats "fast" is 1.5x "reference".
    base = harness.Result("cloze", "train cubes/s", "reference", rates=[10.0, 10.0, 2.5])
    fast = harness.Result("cloze", "train cubes/s", "fast", rates=[15.0, 3.75, 3.75])
    assert fast.median / base.median == 0.375  # the ratio of the medians compares a fast moment with a slow one
    assert harness.paired_ratio(fast, base) == 1.5


def test_child_run_reports_exit_status_and_output():
    child = harness.run_child([sys.executable, "-c", "import sys; print('out'); sys.exit('failed here')"])
    assert child.returncode == 1 and child.stdout == "out\n" and child.stderr.strip() == "failed here"
    assert child.seconds > 0 and child.max_rss_kib > 0
