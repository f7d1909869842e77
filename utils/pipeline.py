"""VEC from frames on disk to AUROC, one step per function, in the order they run.

    open_dataset_split   frames and ground truth              utils/datasets/
    compute_flow         optical flow files                   utils/flow/
    boxes_of_split       foreground boxes (box files)         utils/foreground/
    cubes_of_split       spatio-temporal cubes (memory-mapped) utils/cubes.py
    run_training         cloze networks + training-score statistics   utils/training.py
    run_testing          cube scores → frame scores                   utils/scoring.py
      evaluate           frame, pixel and region metrics              utils/metrics/
      write_results      metrics.json, per_video.csv, figures, report.html   utils/report/

Each step reads the settings it needs from a `RunConfig` and calls the library functions
(which take explicit arguments). docs/architecture.md draws the same path.

Under torchrun (utils/distributed.py) every rank runs each step: flow, boxes and cubes
of its share of the videos (`frames_of_this_rank`), its share of each training batch and
of the cubes to score; rank 0 writes the shared files (box file, merged cube store, model,
results) while the others wait. Each step is written once: a single process is the case of
one rank, whose share is every frame, whose gathers return its own result and whose cube
part is the store itself.
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils import distributed
from utils.config import RunConfig, resolve_device
from utils.cubes import CubeStore, build_cubes, merge_cube_stores, read_store_settings, store_capacity
from utils.datasets import VideoSplit, generate_synthetic, open_split, synthetic_is_current
from utils.datasets.regions import REGION_FOLDER
from utils.errors import VECError
from utils.flow import build_flow_backend, compute_split_flow, flow_file_path
from utils.foreground import MODES_WITH_DETECTOR, build_detector, split_boxes
from utils.io import (atomic_dir, atomic_file, check_can_create, make_dirs, reproducibility_record, save_npy,
                      seed_everything, write_json)
from utils.metrics import PROTOCOL, evaluate_split, per_video_table, pixel_score_map, save_roc_pr_curve_data
from utils.report import plot_frame_and_heat_map, plot_results, plot_video_scores, write_report
from utils.run_lock import exclusive
from utils.scoring import frame_scores, score_cubes
from utils.released import ReleasedSet
from utils.released import describe as describe_released
from utils.trained_model import TrainedBlocks, check_trained_fits, find_model, load_trained, save_trained
from utils.training import train_blocks


def open_dataset_split(cfg: RunConfig, split: str) -> VideoSplit:
    """The split's frames; the built-in synthetic dataset is generated on first use (by rank 0)."""
    if cfg.dataset_name == "synthetic":
        if distributed.is_main() and not synthetic_is_current(cfg.dataset_dir):
            generate_synthetic(cfg.dataset_dir, seed=cfg.seed)
        distributed.barrier()
    return open_split(cfg.dataset_dir, cfg.dataset.layout, split)


@exclusive  # one run at a time per work folder (utils/run_lock.py)
def compute_flow(cfg: RunConfig, split: VideoSplit, device: str) -> int:
    """Flow files of every frame of the split; returns how many were written (the rest existed)."""
    backend = build_flow_backend(cfg.dataset.flow_method, device=device,
                                 flownet2_checkpoint=cfg.dataset.flownet2_checkpoint,
                                 raft_weights=cfg.dataset.raft_weights, precision=cfg.dataset.flow_precision)
    written = compute_split_flow(split, backend, cfg.flow_dir, batch_size=cfg.dataset.flow_batch_size,
                                 progress=distributed.is_main(), frames=frames_of_this_rank(split))
    return sum(distributed.gather_objects(written))


def frames_of_this_rank(split: VideoSplit) -> list[int]:
    """The frames of this rank's videos: consecutive videos, shared out by frame count, so the
    ranks' frames in rank order are the split's frames in order (all of them in one process)."""
    first, stop = distributed.share_bounds(len(split.video_names), distributed.rank(), distributed.world_size(),
                                           split.video_lengths)
    return np.flatnonzero((split.frame_video_idx > first) & (split.frame_video_idx <= stop)).tolist()


def require_flow(cfg: RunConfig, split: VideoSplit) -> None:
    for i in (0, len(split) - 1):
        if not flow_file_path(cfg.flow_dir, split, i).is_file():
            raise VECError(f"optical flow of the {split.split} split of {cfg.dataset_name} is missing "
                           f"({flow_file_path(cfg.flow_dir, split, i)}); run `python calc_img_inputs.py --split "
                           f"{split.split} --set shared_parameters.dataset_name={cfg.dataset_name}` first "
                           "(it computes that split only)")


def precision_settings(cfg: RunConfig, *keys: str) -> dict:
    """The precision keys among `keys` that are not fp32: recorded only then, so what fp32 runs
    wrote before these keys existed (box settings, manifests) still matches."""
    return {key: getattr(cfg.dataset, key) for key in keys if getattr(cfg.dataset, key) != "fp32"}


def box_settings(cfg: RunConfig) -> dict:
    """What decides the boxes besides the frames: mode, thresholds and detector."""
    ds = cfg.dataset
    detector = ({"detector": ds.detector, "detector_checkpoint": ds.detector_checkpoint.name,
                 **precision_settings(cfg, "detector_precision")}
                if cfg.foreground_extraction_mode in MODES_WITH_DETECTOR else {})
    return {"mode": cfg.foreground_extraction_mode, **asdict(ds.boxes), **detector}


def model_settings(cfg: RunConfig) -> dict:
    """The settings that change what a trained model means; test.py refuses a model trained with others."""
    ds, cloze = cfg.dataset, cfg.cloze
    return {"dataset": cfg.dataset_name, "layout": ds.layout, "patch_size": ds.patch_size,
            "blocks": [ds.h_block, ds.w_block], "flow_method": ds.flow_method, "motion_thr": ds.motion_thr,
            "boxes": box_settings(cfg), "nf": cloze.nf, "context_frame_num": cloze.context_frame_num,
            "context_of_num": cloze.context_of_num, "border_mode": cloze.border_mode, "raw_range": cloze.raw_range,
            "use_flow": cloze.use_flow, "padding": cloze.padding, **precision_settings(cfg, "flow_precision")}


def boxes_of_split(cfg: RunConfig, split: VideoSplit, device: str) -> list[np.ndarray]:
    ds = cfg.dataset

    def detector_factory():
        return build_detector(ds.detector, checkpoint=ds.detector_checkpoint, config=ds.detector_config,
                              device=device, batch_size=ds.detector_batch_size, precision=ds.detector_precision)

    # Each rank its videos' boxes; all get every frame's boxes; rank 0 writes the file.
    boxes = split_boxes(split, cfg.foreground_extraction_mode, ds.boxes,
                        reuse_saved=ds.for_split(split.split).reuse_boxes, detector_factory=detector_factory,
                        batch_size=ds.detector_batch_size, settings=box_settings(cfg),
                        progress=distributed.is_main(), frames=frames_of_this_rank(split),
                        gather=distributed.gather_objects, save=distributed.is_main())
    distributed.barrier()  # the box file is written (or reused) before anyone goes on
    return boxes


def boxes_fingerprint(boxes: list[np.ndarray]) -> str:
    """A digest of every frame's boxes: cubes are reusable only for the very same boxes."""
    digest = hashlib.sha256()
    for frame_boxes in boxes:
        array = np.ascontiguousarray(np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4))
        digest.update(len(array).to_bytes(8, "little"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def cubes_of_split(cfg: RunConfig, split: VideoSplit, boxes: list[np.ndarray]) -> CubeStore:
    """The split's cubes; a stored set is reused when `*_foreground_saved` and made from the same inputs."""
    ds, cloze = cfg.dataset, cfg.cloze
    options = ds.for_split(split.split)
    directory = cfg.work_dir / f"{cfg.dataset_name}_cubes_{split.split}_{cfg.foreground_extraction_mode}"
    settings = {"patch_size": ds.patch_size, "context_frame_num": cloze.context_frame_num,
                "context_of_num": cloze.context_of_num, "border_mode": cloze.border_mode, "motion_thr": ds.motion_thr,
                "blocks": [ds.h_block, ds.w_block], "flow_method": ds.flow_method, "block_mode": options.block_mode,
                "boxes": boxes_fingerprint(boxes), **precision_settings(cfg, "flow_precision")}
    reuse = options.reuse_cubes and read_store_settings(directory) == settings
    if distributed.broadcast_object(reuse):  # rank 0 decides for all
        print(f"cubes: reusing {directory}")
        return CubeStore.open(directory)
    # Each rank crops its videos' cubes into a part store; rank 0 joins the parts in rank
    # order (the store one process would have made) while the others wait; all open it.
    # A single process crops into the store itself: nothing to join.
    single = distributed.world_size() == 1
    part = directory if single else directory.with_name(f"{directory.name}.rank{distributed.rank()}")
    try:
        build_cubes(split, boxes, cfg.flow_dir, part, patch_size=ds.patch_size,
                    context_frame_num=cloze.context_frame_num, context_of_num=cloze.context_of_num,
                    border_mode=cloze.border_mode, motion_thr=ds.motion_thr, h_block=ds.h_block,
                    w_block=ds.w_block, block_mode=options.block_mode, settings=settings,
                    progress=distributed.is_main(), frames=frames_of_this_rank(split))
        parts = distributed.gather_objects(part)
        if distributed.is_main():
            if not single:
                merge_cube_stores(parts, directory, store_capacity(boxes, options.block_mode))
            for stale in directory.parent.glob(f"{directory.name}.rank*"):  # of a killed run with more ranks
                shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        if not single:  # build_cubes leaves no half-written store; no part is left behind when a rank failed
            shutil.rmtree(part, ignore_errors=True)
        raise
    distributed.barrier()
    return CubeStore.open(directory)


@exclusive  # one run at a time per work folder (utils/run_lock.py)
def run_training(cfg: RunConfig, split: VideoSplit | None = None) -> dict:
    """boxes → cubes → one cloze network per block → training-score statistics → saved model.

    `split`: the training frames (default: the configured dataset's train split)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    started = time.time()
    check_can_create(cfg.work_dir)  # a file in the way fails now, not after the training
    split = split if split is not None else open_dataset_split(cfg, "train")
    require_flow(cfg, split)
    store = cubes_of_split(cfg, split, boxes_of_split(cfg, split, device))
    if len(store) < 2:
        raise VECError(f"only {len(store)} training cubes were found; check the boxes and the optical flow")
    print(f"training on {len(store)} cubes from {len(split)} frames ({device})")
    # Under torchrun DistributedDataParallel; rank 0 writes the files while the others wait.
    trained = train_blocks(store, cfg.cloze, cfg.dataset.h_block, cfg.dataset.w_block, device, cfg.seed,
                           progress=distributed.is_main(), parallel=True)
    paths = None
    if distributed.is_main():
        paths = save_trained(trained, cfg.work_dir, cfg.dataset_name, cfg.foreground_extraction_mode,
                             cfg.method, scene_level=cfg.dataset.scene_level, settings=model_settings(cfg))
    paths = distributed.broadcast_object(paths)
    return {"n_cubes": len(store), "n_frames": len(split), "seconds": time.time() - started,
            "saved": [str(p) for p in paths]}


@exclusive  # one run at a time per work folder (utils/run_lock.py)
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
    trained = trained_model_to_test(cfg, model_dir)
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
    frame_size = tuple(split.read_frame(0).shape[:2])
    scores = frame_scores(len(split), frame_size, store.frame_index, store.boxes, cube_scores)

    report = evaluate(cfg, split, store, cube_scores, scores)
    report.update({"dataset": cfg.dataset_name, "n_cubes": len(store), "flow_method": cfg.dataset.flow_method,
                   "detector": cfg.dataset.detector, "foreground_extraction_mode": cfg.foreground_extraction_mode,
                   "boxes": box_settings(cfg), "model": model_settings(cfg), "cloze": asdict(cfg.cloze),
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


def trained_model_to_test(cfg: RunConfig, model_dir: Path | None) -> TrainedBlocks:
    """The configured dataset's trained model, or the one in `model_dir`, checked against the
    settings it was trained with (its manifest, where it has one) and the configured network."""
    mode, method = cfg.foreground_extraction_mode, cfg.method
    if model_dir is None:
        return load_trained(cfg.work_dir, cfg.dataset_name, mode, method, scene_level=cfg.dataset.scene_level,
                            settings=model_settings(cfg))
    folder, name = find_model(model_dir, cfg.dataset_name, mode, method, cfg.modality)
    if name != cfg.dataset_name:
        raise VECError(f"--model {folder} holds a model of {name}, not of the configured {cfg.dataset_name}; "
                       f"add --set shared_parameters.dataset_name={name}")
    trained = load_trained(folder, name, mode, method, scene_level=cfg.dataset.scene_level,
                           settings=model_settings(cfg))
    check_trained_fits(trained, cfg.dataset.h_block, cfg.dataset.w_block, cfg.cloze,
                       f"{folder}/{name}_model_{mode}_{method}.npy", cfg.dataset_name)
    return trained


def evaluate(cfg: RunConfig, split: VideoSplit, store: CubeStore, cube_scores: np.ndarray,
             scores: np.ndarray) -> dict:
    """Every number of metrics.json (utils/metrics/evaluate.py) for the split's scores."""
    return evaluate_split(scores, split.labels, split.frame_video_idx, smoothing_sigma=cfg.dataset.smoothing_sigma,
                          frame_size=tuple(split.read_frame(0).shape[:2]), frame_index=store.frame_index,
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
    frame_size = tuple(split.read_frame(0).shape[:2])
    for number, name in enumerate(tqdm(split.video_names, desc="report", unit="video"), start=1):
        members = np.flatnonzero(split.frame_video_idx == number)
        plot_video_scores(figures / f"{name}_scores.png", scores[members], split.labels[members], name)
        top = int(members[np.argmax(scores[members])])
        mine = store.frame_index == top
        plot_frame_and_heat_map(figures / f"{name}_top.png", split.read_frame(top), store.boxes[mine],
                                cube_scores[mine], split.read_mask(top) if split.has_pixel_masks else None,
                                pixel_score_map(frame_size, store.boxes[mine], cube_scores[mine]),
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
