"""VEC on a benchmark dataset, from frames on disk to AUROC: what the three scripts run.

    compute_flow         calc_img_inputs.py: optical flow of a split       utils/stages.py
    run_training         train.py: boxes → cubes → cloze networks, saved   utils/stages.py
    run_testing          test.py: boxes → cubes → cube scores → frame scores → metrics
      trained_model_to_test   the configured dataset's model, or `--model DIR`'s
      write_results      metrics.json, per_video.csv, figures, report.html   utils/report/

The stages themselves (utils/stages.py) are shared with own videos and live cameras; the
numbers of metrics.json are computed in utils/metrics/. docs/architecture.md draws the path.
Under torchrun every rank runs each function; rank 0 evaluates and writes the results.
"""
from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.infra import distributed
from utils.config import RunConfig, resolve_device
from utils.cubes import CubeStore
from utils.datasets import VideoSplit
from utils.datasets.regions import REGION_FOLDER
from utils.infra.errors import VECError
from utils.fingerprints import model_settings
from utils.infra.io import (atomic_dir, atomic_file, check_can_create, make_dirs, reproducibility_record, save_npy,
                      seed_everything, write_json)
from utils.metrics import PROTOCOL, evaluate_split, per_video_table, pixel_score_map, save_roc_pr_curve_data
from utils.released import ReleasedSet
from utils.released import describe as describe_released
from utils.report import plot_frame_and_heat_map, plot_results, plot_video_scores, write_report
from utils.infra.run_lock import exclusive
from utils.scoring import frame_scores, score_cubes
from utils.stages import (boxes_of_split, compute_flow, cubes_of_split, open_dataset_split, require_flow,
                          train_on_split)
from utils.trained_model import TrainedBlocks, check_trained_fits, find_model, load_trained

__all__ = ["compute_flow", "open_dataset_split", "run_training", "run_testing"]


@exclusive  # one run at a time per work folder (utils/infra/run_lock.py)
def run_training(cfg: RunConfig) -> dict:
    """The configured dataset's train split → a trained model in data/raw2flow/ (utils/stages.train_on_split)."""
    return train_on_split(cfg, open_dataset_split(cfg, "train"))


@exclusive  # one run at a time per work folder (utils/infra/run_lock.py)
def run_testing(cfg: RunConfig, model_dir: Path | None = None, released: ReleasedSet | None = None) -> dict:
    """boxes → cubes → cube scores → frame scores → metrics, written to results/<dataset>/.

    `model_dir`: score the model in that folder instead of the configured dataset's (`test.py
    --model DIR`); results then go to results/<dataset>-<folder name>/, or results/<set name>/ for
    a released set (`released`: utils/released.py), whose description goes into the metrics.
    The results folder is replaced only when everything in it was written.
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    check_can_create(cfg.results_dir)  # a file in the way fails now, not after the scoring
    split = open_dataset_split(cfg, "test")
    if split.labels is None:
        raise VECError(f"the test split of {cfg.dataset_name} has no ground truth in {cfg.dataset_dir}; "
                       "download it with the dataset (see the README)")
    if len(np.unique(split.labels)) < 2:
        kind = "anomalous" if split.labels[0] else "normal"
        raise VECError(f"every test frame of {cfg.dataset_name} is {kind}: AUROC needs both classes; "
                       f"check the ground truth in {cfg.dataset_dir}")
    settings = model_settings(cfg)  # what the model must have been trained with; the report records it
    trained = trained_model_to_test(cfg, model_dir, settings)
    require_flow(cfg, split)
    store = cubes_of_split(cfg, split, boxes_of_split(cfg, split, device))
    if len(store) == 0:
        raise VECError(f"no test cubes: the boxes of {cfg.dataset_name}'s test split (thresholds in "
                       f"[{cfg.dataset_name}]) left none with motion, so there is nothing to score; "
                       "lower area_thr / binary_thr or check the optical flow")
    cube_scores = score_cubes(store, trained, cfg.cloze, device, progress=distributed.is_main(),
                              parallel=distributed.active())
    if not distributed.is_main():  # rank 0 evaluates and writes the results
        return distributed.broadcast_object(None)
    scores = frame_scores(len(split), split.frame_size, store.frame_index, store.boxes, cube_scores)

    report = evaluate(cfg, split, store, cube_scores, scores)
    report.update({"dataset": cfg.dataset_name, "n_cubes": len(store), "flow_method": cfg.dataset.flow_method,
                   "detector": cfg.dataset.detector, "foreground_extraction_mode": cfg.foreground_extraction_mode,
                   "boxes": settings["boxes"], "model": settings, "cloze": asdict(cfg.cloze),
                   "reproducibility": reproducibility_record(device)})
    out = cfg.results_dir / cfg.dataset_name
    if model_dir is not None:
        report["model_dir"] = str(model_dir)
        out = cfg.results_dir / (released.name if released is not None else f"{cfg.dataset_name}-{Path(model_dir).name}")
    if released is not None:
        report["released_model"] = describe_released(released)
    with atomic_dir(out) as staging:
        write_results(staging, cfg, split, store, cube_scores, scores, report)
    report["results_dir"] = str(out)
    return distributed.broadcast_object(report)


def trained_model_to_test(cfg: RunConfig, model_dir: Path | None, settings: dict) -> TrainedBlocks:
    """The configured dataset's trained model, or the one in `model_dir`, checked against the
    `settings` it was trained with (its manifest, where it has one) and the configured network."""
    mode, method = cfg.foreground_extraction_mode, cfg.method
    if model_dir is None:
        return load_trained(cfg.work_dir, cfg.dataset_name, mode, method, scene_level=cfg.dataset.scene_level,
                            settings=settings)
    folder, name = find_model(model_dir, cfg.dataset_name, mode, method, cfg.modality)
    if name != cfg.dataset_name:
        raise VECError(f"--model {folder} holds a model of {name}, not of the configured {cfg.dataset_name}; "
                       f"add --set shared_parameters.dataset_name={name}")
    trained = load_trained(folder, name, mode, method, scene_level=cfg.dataset.scene_level, settings=settings)
    check_trained_fits(trained, cfg.dataset.h_block, cfg.dataset.w_block, cfg.cloze,
                       f"{folder}/{name}_model_{mode}_{method}.npy", cfg.dataset_name)
    return trained


def evaluate(cfg: RunConfig, split: VideoSplit, store: CubeStore, cube_scores: np.ndarray,
             scores: np.ndarray) -> dict:
    """Every number of metrics.json (utils/metrics/evaluate.py) for the split's scores."""
    return evaluate_split(scores, split.labels, split.frame_video_idx, smoothing_sigma=cfg.dataset.smoothing_sigma,
                          frame_size=split.frame_size, frame_index=store.frame_index,
                          boxes=store.boxes, cube_scores=cube_scores,
                          read_mask=split.read_mask if split.has_pixel_masks else None,
                          region_dir=split.dataset_dir / REGION_FOLDER, video_names=split.video_names)


def write_results(out: Path, cfg: RunConfig, split: VideoSplit, store: CubeStore, cube_scores: np.ndarray,
                  scores: np.ndarray, report: dict) -> None:
    """Scores, metrics, the reference's curve file, per-video table, figures and report.html into `out`."""
    save_npy(out / "frame_scores.npy", scores)
    save_npy(out / "frame_labels.npy", split.labels)
    save_roc_pr_curve_data(scores, split.labels,
                           out / f"{cfg.modality}_{cfg.foreground_extraction_mode}_{cfg.method}_frame_results.npz")
    write_json(out / "metrics.json", report)
    per_video = per_video_table(scores, split.labels, split.frame_video_idx, split.video_names)
    with atomic_file(out / "per_video.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "frames", "anomalous_frames", "auroc", "ap"])
        writer.writeheader()
        writer.writerows(per_video)
    released = report.get("released_model")
    by = f" with the released model {released['name']}" if released else ""
    title = f"VEC on {cfg.dataset_name}{by}: micro AUROC {report['auroc_micro']:.3f}"
    plot_results(out, split, store, cube_scores, scores, report["auroc_micro"], title)

    figures = make_dirs(out / "report_files")
    video_images = []
    for number, name in enumerate(tqdm(split.video_names, desc="report", unit="video"), start=1):
        members = np.flatnonzero(split.frame_video_idx == number)
        plot_video_scores(figures / f"{name}_scores.png", scores[members], split.labels[members], name)
        top = int(members[np.argmax(scores[members])])
        mine = store.frame_index == top
        plot_frame_and_heat_map(figures / f"{name}_top.png", split.read_frame(top), store.boxes[mine],
                                cube_scores[mine], split.read_mask(top) if split.has_pixel_masks else None,
                                pixel_score_map(split.frame_size, store.boxes[mine], cube_scores[mine]),
                                f"{name}, frame {top - members[0] + 1}: score {scores[top]:.2f}")
        video_images.append((name, f"report_files/{name}_scores.png", f"report_files/{name}_top.png"))
    notes = [] if report["rbdc"] is not None else ["RBDC / TBDC: " + report["region_ground_truth"]]
    if released:
        notes.insert(0, f"scored with the reference authors' released model {released['name']} "
                        f"({released['variant']}, context_of_num = {released['context_of_num']}; {released['source']}): "
                        f"micro AUROC {report['auroc_micro']:.4f} here, {released['released_auroc']:.3f} as released, "
                        f"{released['paper_auroc']:.3f} in the paper")
    if report["pixel_auroc"] is None:
        notes.append("pixel AUROC: this dataset has no pixel masks")
    write_report(out / "report.html", title=title, metrics=report, protocol=PROTOCOL, per_video=per_video,
                 roc_image="roc.png", video_images=video_images, notes=notes)
