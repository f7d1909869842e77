"""Anomaly scores of test cubes and frames (docs/method.md §7).

Cube score = w_raw·(raw_sse - mean_raw)/std_raw + w_of·(of_sse - mean_of)/std_of, with
the training-score statistics of the cube's block. Frame score = max over the frame's
cubes whose ceiled box has a non-empty area inside the frame; a frame without one
scores -100000; a cube in a block with no model scores +100000.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from utils.config import ClozeConfig
from utils.cloze_steps import cube_errors, distributed_cube_errors
from utils.cubes import CubeStore, ceil_box
from utils.trained_model import TrainedBlocks, block_networks

NO_BOX_SCORE = -100000.0
NO_MODEL_SCORE = 100000.0


def score_cubes(store: CubeStore, trained: TrainedBlocks, cloze: ClozeConfig, device: str,
                batch_size: int | None = None, progress: bool = True, parallel: bool = False) -> np.ndarray:
    """Normalised anomaly score of every cube of a test store.

    `parallel`: every rank of the current torchrun group calls this; each scores its
    contiguous share of each block's cubes and all get every score, in store order.
    """
    return block_scores(store, block_networks(trained, cloze, device), trained, cloze, device,
                        batch_size=batch_size, progress=progress, parallel=parallel)


def block_scores(store: CubeStore, networks: list[list[nn.Module | None]], trained: TrainedBlocks, cloze: ClozeConfig,
                 device: str, *, batch_size: int | None = None, progress: bool = False, parallel: bool = False,
                 cuda_graphs: bool | None = None) -> np.ndarray:
    """`score_cubes` with each block's network already built (`block_networks`): the live scorer builds
    them once for every frame. A cube of a block without a network scores NO_MODEL_SCORE."""
    scores = np.full(len(store), NO_MODEL_SCORE)
    for h, row in enumerate(networks):
        for w, model in enumerate(row):
            members = store.block_members(h, w)
            if model is None or len(members) == 0:
                continue
            errors = distributed_cube_errors if parallel else cube_errors
            raw, of = errors(model, store, members, batch_size or cloze.batch_size, device, cloze.use_flow,
                             progress, "score cubes" + (f" block ({h},{w})" if len(networks) * len(row) > 1 else ""),
                             cloze.precision, cloze.cuda_graphs if cuda_graphs is None else cuda_graphs)
            scores[members] = normalised_scores(raw, of, block_statistics(trained, h, w), cloze)
    return scores


def block_statistics(trained: TrainedBlocks, h: int, w: int) -> tuple[float, float, float | None, float | None]:
    """Mean and standard deviation of a block's training errors, raw then flow (None without flow scores)."""
    train_raw, train_of = trained.raw_scores[h][w], trained.of_scores[h][w]
    return (train_raw.mean(), train_raw.std(), *((None, None) if train_of is None or len(train_of) == 0 else (train_of.mean(), train_of.std())))


def normalised_scores(raw: np.ndarray, of: np.ndarray, statistics: tuple, cloze: ClozeConfig) -> np.ndarray:
    """Cube scores of one block from its cubes' errors: w_raw·z(raw error) + w_of·z(flow error)."""
    raw_mean, raw_std, of_mean, of_std = statistics
    scores = cloze.w_raw * (raw - raw_mean) / raw_std
    if cloze.use_flow:
        scores = scores + cloze.w_of * (of - of_mean) / of_std
    return scores


def frame_scores(n_frames: int, frame_size: tuple[int, int], frame_index: np.ndarray, boxes: np.ndarray,
                 cube_scores: np.ndarray) -> np.ndarray:
    """Max cube score per frame (the reference's per-pixel max map, reduced to its maximum)."""
    height, width = frame_size
    result = np.full(n_frames, NO_BOX_SCORE)
    for i, box, score in zip(frame_index, boxes, cube_scores):
        x1, y1, x2, y2 = ceil_box(box)
        # The reference paints score_map[y1:y2, x1:x2]; only a non-empty slice counts.
        if len(range(height)[y1:y2]) and len(range(width)[x1:x2]):
            result[i] = max(result[i], score)
    return result
