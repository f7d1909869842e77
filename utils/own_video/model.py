"""Which trained model scores your own videos: the configured dataset's, or another run's (`--model DIR`)."""
from __future__ import annotations

from pathlib import Path

from utils.config import RunConfig
from utils.trained_model import TrainedBlocks, check_trained_fits, find_model, load_trained


def load_video_model(cfg: RunConfig, model_dir: Path | None) -> tuple[TrainedBlocks, str]:
    """The trained model for `cfg` (its work_dir and dataset_name), or the one in `model_dir`;
    checked against the configured cloze settings and blocks. Returns (model, where it came from)."""
    mode, method = cfg.foreground_extraction_mode, cfg.method
    if model_dir is None:
        folder, name, scene_level = cfg.work_dir, cfg.dataset_name, cfg.dataset.scene_level
    else:
        folder, name = find_model(model_dir, cfg.dataset_name, mode, method, cfg.modality)
        # ShanghaiTech's files have an outer scene list (the reference's); a video set's never do.
        scene_level = cfg.dataset.scene_level if name == cfg.dataset_name else name == "ShanghaiTech"
    trained = load_trained(folder, name, mode, method, scene_level=scene_level)
    where = f"{folder}/{name}_model_{mode}_{method}.npy"
    check_trained_fits(trained, cfg.dataset.h_block, cfg.dataset.w_block, cfg.cloze, where, cfg.dataset_name)
    return trained, where
