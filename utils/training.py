"""Training the cloze networks on the cubes of each block (SPEC §6), and storing them.

Per block: Adam, shuffled batches, loss = lambda_raw·MSE(raw) + lambda_of·MSE(flow);
then one eval-mode pass over the training cubes gives each cube's raw and flow score
(sum of squared errors), whose mean and std normalise the test scores.

Saved files keep the reference's names and structure (`data/raw2flow/<dataset>_model_
<mode>_SelfComplete.npy` etc.: nested [h][w] lists, state dicts with DataParallel's
'module.' prefix), so models trained by the reference code load here and vice versa.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models import StackedClozeNet, build_cloze_network, strip_data_parallel_prefix
from utils.checkpoints import load_torch_file
from utils.config import ClozeConfig
from utils.cubes import CubeStore
from utils.errors import VECError


def make_network(cloze: ClozeConfig, stacked: bool = True) -> nn.Module:
    """The cloze network: its U-Nets run as one (models/stacked_cloze.py) unless `stacked` is False.

    Both give the same initial weights for the same seed and have the reference's state-dict keys.
    """
    network = build_cloze_network(cloze.nf, cloze.tot_raw_num, cloze.tot_of_num, cloze.border_mode,
                                  cloze.network_raw_range, cloze.use_flow, cloze.padding)
    return StackedClozeNet(network) if stacked else network


def cube_batches(store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                 generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Network inputs for batches of cubes: raw (B, 3T, p, p) in [0, 1] and flow (B, 2T_of, p, p).

    With a generator the order is shuffled (as DataLoader(shuffle=True)); rows of a batch
    are read from the memory map in file order, which is faster and changes nothing.
    """
    if generator is not None:
        indices = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(indices), batch_size):
        rows = np.sort(indices[start:start + batch_size])
        raw = torch.from_numpy(np.ascontiguousarray(store.raw[rows]))
        flow = torch.from_numpy(np.ascontiguousarray(store.flow[rows]))
        raw = raw.reshape(len(rows), -1, *raw.shape[-2:]).to(device=device, dtype=torch.float32) / 255.0
        flow = flow.reshape(len(rows), -1, *flow.shape[-2:]).to(device=device, dtype=torch.float32)
        yield raw, flow


def train_block(model: nn.Module, store: CubeStore, indices: np.ndarray, cloze: ClozeConfig, device: str,
                generator: torch.Generator, progress: bool = True, label: str = "") -> list[float]:
    """Train `model` in place on the cubes `indices`; returns the mean loss of each epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cloze.learning_rate, eps=1e-7, weight_decay=0.0)
    mse = nn.MSELoss()
    model.train()
    epoch_losses = []
    n_batches = -(-len(indices) // cloze.batch_size)
    bar = tqdm(total=cloze.epochs * n_batches, desc=f"train{label}", unit="batch", disable=not progress)
    for epoch in range(cloze.epochs):
        total, seen = 0.0, 0
        for raw, flow in cube_batches(store, indices, cloze.batch_size, device, generator):
            of_out, raw_out, of_target, raw_target = model(raw, flow)
            loss = cloze.lambda_raw * mse(raw_out, raw_target)
            if cloze.use_flow:
                loss = loss + cloze.lambda_of * mse(of_out, of_target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(raw)
            seen += len(raw)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.5f}")
        epoch_losses.append(total / seen)
    bar.close()
    return epoch_losses


@torch.no_grad()
def cube_errors(model: nn.Module, store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                use_flow: bool, progress: bool = False, label: str = "errors") -> tuple[np.ndarray, np.ndarray | None]:
    """Per-cube raw and flow scores: the SUM of squared completion errors (eval mode)."""
    model.eval()
    raw_scores, of_scores = [], []
    batches = cube_batches(store, indices, batch_size, device)
    for raw, flow in tqdm(batches, total=-(-len(indices) // batch_size), desc=label, unit="batch", disable=not progress):
        of_out, raw_out, of_target, raw_target = model(raw, flow)
        raw_scores.append(((raw_target - raw_out) ** 2).flatten(1).sum(1).double().cpu().numpy())
        if use_flow:
            of_scores.append(((of_target - of_out) ** 2).flatten(1).sum(1).double().cpu().numpy())
    empty = np.zeros(0)
    return (np.concatenate(raw_scores) if raw_scores else empty,
            (np.concatenate(of_scores) if of_scores else empty) if use_flow else None)


@dataclass
class TrainedBlocks:
    """Per block [h][w]: a state dict (None: no model) and its training scores."""

    states: list[list[dict | None]]
    raw_scores: list[list[np.ndarray]]
    of_scores: list[list[np.ndarray]]


def train_blocks(store: CubeStore, cloze: ClozeConfig, h_block: int, w_block: int, device: str, seed: int,
                 progress: bool = True) -> TrainedBlocks:
    """Train one network per block holding more than one cube (the reference's rule)."""
    trained = TrainedBlocks([[None] * w_block for _ in range(h_block)], [[np.zeros(0)] * w_block for _ in range(h_block)],
                            [[np.zeros(0)] * w_block for _ in range(h_block)])
    for h in range(h_block):
        for w in range(w_block):
            members = store.block_members(h, w)
            if len(members) <= 1:
                continue
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            model = make_network(cloze).to(device)
            label = f" block ({h},{w})" if h_block * w_block > 1 else ""
            train_block(model, store, members, cloze, device, generator, progress, label)
            raw, of = cube_errors(model, store, members, cloze.batch_size, device, cloze.use_flow, progress,
                                  f"training-score pass{label}")
            trained.states[h][w] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            trained.raw_scores[h][w] = raw
            trained.of_scores[h][w] = of if of is not None else np.zeros(0)
    return trained


def _file_names(work_dir: Path, dataset_name: str, mode: str, method: str) -> tuple[Path, Path, Path]:
    stem = Path(work_dir) / dataset_name
    return (Path(f"{stem}_model_{mode}_{method}.npy"), Path(f"{stem}_raw_training_scores_{mode}_{method}.npy"),
            Path(f"{stem}_of_training_scores_{mode}_{method}.npy"))


def save_trained(trained: TrainedBlocks, work_dir: Path, dataset_name: str, mode: str, method: str,
                 scene_level: bool) -> list[Path]:
    """Save in the reference's structure; `scene_level` adds ShanghaiTech's outer scene list."""
    model_path, raw_path, of_path = _file_names(work_dir, dataset_name, mode, method)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    models = [[[{"module." + k: v for k, v in s.items()}] if s is not None else [] for s in row] for row in trained.states]
    raw = [[torch.from_numpy(np.asarray(a)) for a in row] for row in trained.raw_scores]
    of = [[torch.from_numpy(np.asarray(a)) for a in row] for row in trained.of_scores]
    for obj, path in ((models, model_path), (raw, raw_path), (of, of_path)):
        temporary = path.with_name(path.name + ".tmp")
        torch.save([obj] if scene_level else obj, temporary)
        temporary.replace(path)
    return [model_path, raw_path, of_path]


def load_trained(work_dir: Path, dataset_name: str, mode: str, method: str, scene_level: bool) -> TrainedBlocks:
    """Load models and training scores saved here or by the reference code."""
    paths = _file_names(work_dir, dataset_name, mode, method)
    try:
        models, raw, of = (load_torch_file(p) for p in paths)
    except FileNotFoundError as err:
        raise VECError(f"trained model file {err.args[0]} not found; run `python train.py` first "
                       "(or copy the reference's trained files into that folder)") from None
    if scene_level:  # ShanghaiTech: one scene in the reference's setting
        models, raw, of = models[0], raw[0], of[0]
    states = [[strip_data_parallel_prefix(cell[0]) if len(cell) else None for cell in row] for row in models]

    def as_arrays(nested):
        return [[np.asarray(c.numpy() if isinstance(c, torch.Tensor) else c, dtype=np.float64).ravel()
                 if not isinstance(c, list) else np.zeros(0) for c in row] for row in nested]

    return TrainedBlocks(states, as_arrays(raw), as_arrays(of))
