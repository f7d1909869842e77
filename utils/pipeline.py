"""VEC from frames on disk to AUROC, one step per function, in the order they run.

    open_dataset_split → compute_flow → split_boxes → split_cubes → train / score → evaluate

Each step reads the settings it needs from a `RunConfig` and calls the library
functions (which take explicit arguments) of utils/ and models/.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from utils import boxes as box_steps
from utils.config import RunConfig, resolve_device
from utils.cubes import CubeStore, build_cubes, read_store_settings
from utils.datasets import VideoSplit, open_split
from utils.errors import VECError
from utils.flow import build_flow_estimator, compute_split_flow, flow_file_path
from utils.metrics import evaluation_report, save_roc_pr_curve_data, write_json
from utils.scoring import frame_scores, score_cubes, seed_everything
from utils.synthetic import generate
from utils.training import load_trained, save_trained, train_blocks


def open_dataset_split(cfg: RunConfig, split: str) -> VideoSplit:
    """The split's frames; the built-in synthetic dataset is generated on first use."""
    if cfg.dataset_name == "synthetic" and not (cfg.dataset_dir / ".complete").is_file():
        generate(cfg.dataset_dir, seed=cfg.seed)
    return open_split(cfg.dataset_dir, cfg.dataset.layout, split)


def compute_flow(cfg: RunConfig, split: VideoSplit, device: str) -> int:
    estimator = build_flow_estimator(cfg.dataset.flow_method, device=device, batch_size=cfg.dataset.flow_batch_size,
                                     flownet2_checkpoint=cfg.dataset.flownet2_checkpoint,
                                     raft_weights=cfg.dataset.raft_weights)
    return compute_split_flow(split, estimator, cfg.flow_dir, batch_size=cfg.dataset.flow_batch_size)


def require_flow(cfg: RunConfig, split: VideoSplit) -> None:
    for i in (0, len(split) - 1):
        if not flow_file_path(cfg.flow_dir, split, i).is_file():
            raise VECError(f"optical flow of the {split.split} split of {cfg.dataset_name} is missing "
                           f"({flow_file_path(cfg.flow_dir, split, i)}); run `python calc_img_inputs.py` first")


def split_boxes(cfg: RunConfig, split: VideoSplit, device: str) -> list[np.ndarray]:
    ds = cfg.dataset
    reuse = ds.train_bbox_saved if split.split == "train" else ds.test_bbox_saved

    def detector_factory():
        return box_steps.build_detector(ds.detector, checkpoint=ds.detector_checkpoint, config=ds.detector_config,
                                        device=device, batch_size=ds.detector_batch_size)

    return box_steps.split_boxes(split, cfg.foreground_extraction_mode, ds.boxes, reuse_saved=reuse,
                                 detector_factory=detector_factory, batch_size=ds.detector_batch_size)


def split_cubes(cfg: RunConfig, split: VideoSplit, boxes: list[np.ndarray]) -> CubeStore:
    """The split's cubes; a stored set is reused when `*_foreground_saved` and made with the same settings."""
    ds, cloze = cfg.dataset, cfg.cloze
    directory = cfg.work_dir / f"{cfg.dataset_name}_cubes_{split.split}_{cfg.foreground_extraction_mode}"
    box_file = box_steps.box_file_path(split.dataset_dir, split.split, cfg.foreground_extraction_mode)
    settings = {"patch_size": ds.patch_size, "context_frame_num": cloze.context_frame_num,
                "context_of_num": cloze.context_of_num, "border_mode": cloze.border_mode, "motion_thr": ds.motion_thr,
                "blocks": [ds.h_block, ds.w_block], "flow_method": ds.flow_method,
                "block_mode": ds.train_block_mode if split.split == "train" else ds.test_block_mode,
                "boxes_mtime": box_file.stat().st_mtime if box_file.is_file() else None}
    reuse = ds.train_foreground_saved if split.split == "train" else ds.test_foreground_saved
    if reuse and read_store_settings(directory) == settings:
        print(f"cubes: reusing {directory}")
        return CubeStore.open(directory)
    return build_cubes(split, boxes, cfg.flow_dir, directory, patch_size=ds.patch_size,
                       context_frame_num=cloze.context_frame_num, context_of_num=cloze.context_of_num,
                       border_mode=cloze.border_mode, motion_thr=ds.motion_thr, h_block=ds.h_block,
                       w_block=ds.w_block, block_mode=settings["block_mode"], settings=settings)


def run_training(cfg: RunConfig) -> dict:
    """boxes → cubes → one cloze network per block → training-score statistics → saved model."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    started = time.time()
    split = open_dataset_split(cfg, "train")
    require_flow(cfg, split)
    store = split_cubes(cfg, split, split_boxes(cfg, split, device))
    if len(store) < 2:
        raise VECError(f"only {len(store)} training cubes were found; check the boxes and the optical flow")
    print(f"training on {len(store)} cubes from {len(split)} frames ({device})")
    trained = train_blocks(store, cfg.cloze, cfg.dataset.h_block, cfg.dataset.w_block, device, cfg.seed)
    paths = save_trained(trained, cfg.work_dir, cfg.dataset_name, cfg.foreground_extraction_mode, cfg.method,
                         scene_level=cfg.dataset.layout == "ShanghaiTech")
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
                           scene_level=cfg.dataset.layout == "ShanghaiTech")
    require_flow(cfg, split)
    store = split_cubes(cfg, split, split_boxes(cfg, split, device))
    cube_scores = score_cubes(store, trained, cfg.cloze, device)
    frame_size = tuple(split.read_frame(0).shape[:2])
    scores = frame_scores(len(split), frame_size, store.frame_index, store.boxes, cube_scores)

    out = cfg.results_dir / cfg.dataset_name
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "frame_scores.npy", scores)
    np.save(out / "frame_labels.npy", split.labels)
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


def plot_results(out, split: VideoSplit, store: CubeStore, cube_scores: np.ndarray, scores: np.ndarray,
                 auroc: float, title: str, max_videos: int = 6) -> None:
    """frame_scores.png, roc.png and top_frames.png (each video's highest-scoring frame with its boxes)."""
    import cv2

    from utils.visualize import plot_frame_scores, plot_roc, plot_top_frames

    plot_frame_scores(out / "frame_scores.png", scores, split.labels, split.frame_video_idx, split.video_names, title)
    plot_roc(out / "roc.png", scores, split.labels, auroc, title)
    frames, boxes, box_scores, masks, titles = [], [], [], [], []
    for video in np.unique(split.frame_video_idx)[:max_videos]:
        members = np.flatnonzero(split.frame_video_idx == video)
        i = int(members[np.argmax(scores[members])])
        mine = store.frame_index == i
        frames.append(split.read_frame(i))
        boxes.append(store.boxes[mine])
        box_scores.append(cube_scores[mine])
        masks.append(cv2.imread(str(split.mask_paths[i]), cv2.IMREAD_GRAYSCALE) if split.mask_paths else None)
        titles.append(f"{split.video_names[video - 1]} frame {i - members[0] + 1}: score {scores[i]:.1f}"
                      f"{' (anomalous)' if split.labels[i] else ''}")
    plot_top_frames(out / "top_frames.png", frames, boxes, box_scores, masks, titles)
