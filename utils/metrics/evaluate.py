"""Every number of a test split's metrics.json, assembled in the order the file holds them.

    evaluate_split   frame level (micro = the paper's), pixel level where there are pixel masks,
                     RBDC / TBDC where there is region ground truth, and the protocol in words
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.datasets.regions import read_region_ground_truth, region_files
from utils.metrics.frame_level import PROTOCOL, evaluation_report
from utils.metrics.pixel_level import pixel_auroc_of_frames
from utils.metrics.region_level import detections_from_boxes, rbdc_tbdc


def evaluate_split(scores: np.ndarray, labels: np.ndarray, frame_video_idx: np.ndarray, *, smoothing_sigma: float,
                   frame_size: tuple[int, int], frame_index: np.ndarray, boxes: np.ndarray,
                   cube_scores: np.ndarray, read_mask: Callable[[int], np.ndarray] | None, region_dir: Path,
                   video_names: Sequence[str]) -> dict:
    """The metrics of one frame score per test frame (`scores`) and of the cubes they came from.

    frame_index, boxes, cube_scores: each cube's frame, box and score (a cube store's columns);
    read_mask(i): frame i's pixel mask, or None when the dataset has none (pixel_auroc is then None);
    region_dir: the folder of region ground truth, one file per video of `video_names` (rbdc and
    tbdc are None, and region_ground_truth says why, when it does not exist).
    """
    report = evaluation_report(scores, labels, frame_video_idx, smoothing_sigma)
    report["pixel_auroc"] = None
    if read_mask is not None:
        masks = (read_mask(i) for i in tqdm(range(len(scores)), desc="pixel AUROC", unit="frame"))
        report["pixel_auroc"] = pixel_auroc_of_frames(frame_size, frame_index, boxes, cube_scores, masks)
    report["rbdc"] = report["tbdc"] = None
    if region_dir.is_dir():
        regions = read_region_ground_truth(region_files(region_dir, video_names), frame_size)
        detections = detections_from_boxes(frame_index, boxes, cube_scores, frame_video_idx)
        report["rbdc"], report["tbdc"] = rbdc_tbdc(detections, regions, len(scores))
        report["region_ground_truth"] = str(region_dir)
    else:
        report["region_ground_truth"] = f"no region ground truth ({region_dir} not found; docs/region_ground_truth.md)"
    report["protocol"] = PROTOCOL
    return report
