"""The stages of a run, each from a RunConfig: what the benchmark pipeline, own videos and live share.

    flow_backend_for, detector_for   build a stage's network from the dataset's settings and a device
    open_dataset_split   frames and ground truth (the synthetic dataset generated on first use)
    compute_flow         optical flow files of a split                   utils/flow/
    require_flow         one line when a split's flow is missing
    boxes_of_split       foreground boxes (box files)                    utils/foreground/
    cubes_of_split       spatio-temporal cubes (memory-mapped)           utils/cubes.py
    train_on_split       cloze networks + training-score statistics, saved   utils/training.py

Each stage reads the settings it needs from a `RunConfig` (what decides reuse: utils/fingerprints.py)
and calls the library functions, which take explicit arguments. utils/pipeline.py runs them on a
benchmark dataset, utils/own_video/ on your videos; utils/live/ builds its networks with the same
builders.

Under torchrun (utils/infra/distributed.py) every rank runs each stage: flow, boxes and cubes
of its share of the videos (`frames_of_this_rank`), its share of each training batch and
of the cubes to score; rank 0 writes the shared files (box file, merged cube store, model)
while the others wait. Each stage is written once: a single process is the case of one rank,
whose share is every frame, whose gathers return its own result and whose cube part is the
store itself.
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from utils.infra import distributed
from utils.config import DatasetConfig, RunConfig, resolve_device
from utils.cubes import CubeStore, build_cubes, merge_cube_stores, read_store_settings, store_capacity
from utils.datasets import VideoSplit, generate_synthetic, open_split, synthetic_is_current
from utils.infra.errors import VECError
from utils.fingerprints import CubeSpec, box_settings, model_settings
from utils.flow import FlowBackend, build_flow_backend, compute_split_flow, flow_file_path
from utils.foreground import build_detector, split_boxes
from utils.foreground.detectors import Detector
from utils.infra.io import check_can_create, seed_everything
from utils.infra.run_lock import exclusive
from utils.trained_model import save_trained
from utils.training import train_blocks


def flow_backend_for(dataset: DatasetConfig, device: str) -> FlowBackend:
    """The flow network or method of the dataset's `flow_method`, with its weights and precision."""
    return build_flow_backend(dataset.flow_method, device=device, flownet2_checkpoint=dataset.flownet2_checkpoint,
                              raft_weights=dataset.raft_weights, precision=dataset.flow_precision)


def detector_for(dataset: DatasetConfig, device: str, batch_size: int | None = None) -> Detector | None:
    """The dataset's appearance detector (None for `none`), with its weights, batch size and precision."""
    return build_detector(dataset.detector, checkpoint=dataset.detector_checkpoint, config=dataset.detector_config,
                          device=device, batch_size=dataset.detector_batch_size if batch_size is None else batch_size,
                          precision=dataset.detector_precision)


def open_dataset_split(cfg: RunConfig, split: str) -> VideoSplit:
    """The split's frames; the built-in synthetic dataset is generated on first use (by rank 0)."""
    if cfg.dataset_name == "synthetic":
        if distributed.is_main() and not synthetic_is_current(cfg.dataset_dir):
            generate_synthetic(cfg.dataset_dir, seed=cfg.seed)
        distributed.barrier()
    return open_split(cfg.dataset_dir, cfg.dataset.layout, split)


@exclusive  # one run at a time per work folder (utils/infra/run_lock.py)
def compute_flow(cfg: RunConfig, split: VideoSplit, device: str) -> int:
    """Flow files of every frame of the split; returns how many were written (the rest existed)."""
    written = compute_split_flow(split, flow_backend_for(cfg.dataset, device), cfg.flow_dir, batch_size=cfg.dataset.flow_batch_size,
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

def boxes_of_split(cfg: RunConfig, split: VideoSplit, device: str) -> list[np.ndarray]:
    """The split's boxes: the saved box file when `*_bbox_saved` and made with the same settings, else computed."""
    ds = cfg.dataset
    # Each rank its videos' boxes; all get every frame's boxes; rank 0 writes the file.
    boxes = split_boxes(split, cfg.foreground_extraction_mode, ds.boxes,
                        reuse_saved=ds.for_split(split.split).reuse_boxes, detector_factory=lambda: detector_for(ds, device),
                        batch_size=ds.detector_batch_size, settings=box_settings(cfg),
                        progress=distributed.is_main(), frames=frames_of_this_rank(split),
                        gather=distributed.gather_objects, save=distributed.is_main())
    distributed.barrier()  # the box file is written (or reused) before anyone goes on
    return boxes

def cubes_of_split(cfg: RunConfig, split: VideoSplit, boxes: list[np.ndarray]) -> CubeStore:
    """The split's cubes; a stored set is reused when `*_foreground_saved` and made from the same inputs."""
    spec, options = CubeSpec.of(cfg, split.split), cfg.dataset.for_split(split.split)
    directory = cfg.work_dir / f"{cfg.dataset_name}_cubes_{split.split}_{cfg.foreground_extraction_mode}"
    settings = spec.fingerprint(boxes)
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
        build_cubes(split, boxes, cfg.flow_dir, part, spec, settings=settings, progress=distributed.is_main(),
                    frames=frames_of_this_rank(split))
        parts = distributed.gather_objects(part)
        if distributed.is_main():
            if not single:
                merge_cube_stores(parts, directory, store_capacity(boxes, spec.block_mode))
            for stale in directory.parent.glob(f"{directory.name}.rank*"):  # of a killed run with more ranks
                shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        if not single:  # build_cubes leaves no half-written store; no part is left behind when a rank failed
            shutil.rmtree(part, ignore_errors=True)
        raise
    distributed.barrier()
    return CubeStore.open(directory)

@exclusive  # one run at a time per work folder (utils/infra/run_lock.py)
def train_on_split(cfg: RunConfig, split: VideoSplit) -> dict:
    """boxes → cubes → one cloze network per block → training-score statistics → saved model, from `split`."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    started = time.time()
    check_can_create(cfg.work_dir)  # a file in the way fails now, not after the training
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
