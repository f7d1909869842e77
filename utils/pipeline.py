"""VEC from frames on disk to AUROC, one step per function, in the order they run.

    open_dataset_split   frames and ground truth              utils/datasets/
    compute_flow         optical flow files                   utils/flow/
    boxes_of_split       foreground boxes (box files)         utils/foreground/
    cubes_of_split       spatio-temporal cubes (memory-mapped) utils/cubes.py
    run_training         cloze networks + training-score statistics   utils/training.py
    run_testing          cube scores → frame scores → metrics, plots  utils/scoring.py, metrics/, report/

Each step reads the settings it needs from a `RunConfig` and calls the library functions
(which take explicit arguments). docs/architecture.md draws the same path.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict

import numpy as np

from utils.config import RunConfig, resolve_device
from utils.cubes import CubeStore, build_cubes, read_store_settings
from utils.datasets import VideoSplit, generate_synthetic, open_split
from utils.errors import VECError
from utils.flow import build_flow_backend, compute_split_flow, flow_file_path
from utils.foreground import build_detector, split_boxes
from utils.io import make_dirs, save_npy, seed_everything, write_json
from utils.metrics import evaluation_report, save_roc_pr_curve_data
from utils.report import plot_results
from utils.scoring import frame_scores, score_cubes
from utils.training import load_trained, save_trained, train_blocks


def open_dataset_split(cfg: RunConfig, split: str) -> VideoSplit:
    """The split's frames; the built-in synthetic dataset is generated on first use."""
    if cfg.dataset_name == "synthetic" and not (cfg.dataset_dir / ".complete").is_file():
        generate_synthetic(cfg.dataset_dir, seed=cfg.seed)
    return open_split(cfg.dataset_dir, cfg.dataset.layout, split)


def compute_flow(cfg: RunConfig, split: VideoSplit, device: str) -> int:
    """Flow files of every frame of the split; returns how many were written (the rest existed)."""
    backend = build_flow_backend(cfg.dataset.flow_method, device=device,
                                 flownet2_checkpoint=cfg.dataset.flownet2_checkpoint,
                                 raft_weights=cfg.dataset.raft_weights)
    return compute_split_flow(split, backend, cfg.flow_dir, batch_size=cfg.dataset.flow_batch_size)


def require_flow(cfg: RunConfig, split: VideoSplit) -> None:
    for i in (0, len(split) - 1):
        if not flow_file_path(cfg.flow_dir, split, i).is_file():
            raise VECError(f"optical flow of the {split.split} split of {cfg.dataset_name} is missing "
                           f"({flow_file_path(cfg.flow_dir, split, i)}); run `python calc_img_inputs.py` first")


def boxes_of_split(cfg: RunConfig, split: VideoSplit, device: str) -> list[np.ndarray]:
    ds = cfg.dataset

    def detector_factory():
        return build_detector(ds.detector, checkpoint=ds.detector_checkpoint, config=ds.detector_config,
                              device=device, batch_size=ds.detector_batch_size)

    return split_boxes(split, cfg.foreground_extraction_mode, ds.boxes,
                       reuse_saved=ds.for_split(split.split).reuse_boxes, detector_factory=detector_factory,
                       batch_size=ds.detector_batch_size)


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
                "boxes": boxes_fingerprint(boxes)}
    if options.reuse_cubes and read_store_settings(directory) == settings:
        print(f"cubes: reusing {directory}")
        return CubeStore.open(directory)
    return build_cubes(split, boxes, cfg.flow_dir, directory, patch_size=ds.patch_size,
                       context_frame_num=cloze.context_frame_num, context_of_num=cloze.context_of_num,
                       border_mode=cloze.border_mode, motion_thr=ds.motion_thr, h_block=ds.h_block,
                       w_block=ds.w_block, block_mode=options.block_mode, settings=settings)


def run_training(cfg: RunConfig, split: VideoSplit | None = None) -> dict:
    """boxes → cubes → one cloze network per block → training-score statistics → saved model.

    `split`: the training frames (default: the configured dataset's train split)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    started = time.time()
    split = split if split is not None else open_dataset_split(cfg, "train")
    require_flow(cfg, split)
    store = cubes_of_split(cfg, split, boxes_of_split(cfg, split, device))
    if len(store) < 2:
        raise VECError(f"only {len(store)} training cubes were found; check the boxes and the optical flow")
    print(f"training on {len(store)} cubes from {len(split)} frames ({device})")
    trained = train_blocks(store, cfg.cloze, cfg.dataset.h_block, cfg.dataset.w_block, device, cfg.seed)
    paths = save_trained(trained, cfg.work_dir, cfg.dataset_name, cfg.foreground_extraction_mode, cfg.method,
                         scene_level=cfg.dataset.scene_level)
    return {"n_cubes": len(store), "n_frames": len(split), "seconds": time.time() - started,
            "saved": [str(p) for p in paths]}


def run_testing(cfg: RunConfig) -> dict:
    """boxes → cubes → cube scores → frame scores → metrics, written to results/<dataset>/."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    split = open_dataset_split(cfg, "test")
    if split.labels is None:
        raise VECError(f"the test split of {cfg.dataset_name} has no ground truth in {cfg.dataset_dir}; "
                       "download it with the dataset (see the README)")
    trained = load_trained(cfg.work_dir, cfg.dataset_name, cfg.foreground_extraction_mode, cfg.method,
                           scene_level=cfg.dataset.scene_level)
    require_flow(cfg, split)
    store = cubes_of_split(cfg, split, boxes_of_split(cfg, split, device))
    cube_scores = score_cubes(store, trained, cfg.cloze, device)
    frame_size = tuple(split.read_frame(0).shape[:2])
    scores = frame_scores(len(split), frame_size, store.frame_index, store.boxes, cube_scores)

    out = make_dirs(cfg.results_dir / cfg.dataset_name)
    save_npy(out / "frame_scores.npy", scores)
    save_npy(out / "frame_labels.npy", split.labels)
    save_roc_pr_curve_data(scores, split.labels,
                           out / f"{cfg.modality}_{cfg.foreground_extraction_mode}_{cfg.method}_frame_results.npz")
    report = evaluation_report(scores, split.labels, split.frame_video_idx)
    report.update({"dataset": cfg.dataset_name, "n_cubes": len(store), "flow_method": cfg.dataset.flow_method,
                   "detector": cfg.dataset.detector, "foreground_extraction_mode": cfg.foreground_extraction_mode,
                   "cloze": asdict(cfg.cloze)})
    write_json(out / "metrics.json", report)

    title = f"VEC on {cfg.dataset_name}: micro AUROC {report['auroc_micro']:.3f}"
    plot_results(out, split, store, cube_scores, scores, report["auroc_micro"], title)
    report["results_dir"] = str(out)
    return report
