"""Training the cloze networks on the cubes of each block (docs/method.md §6).

Per block: Adam, shuffled batches, loss = lambda_raw·MSE(raw) + lambda_of·MSE(flow);
then one eval-mode pass over the training cubes gives each cube's raw and flow score
(sum of squared errors), whose mean and std normalise the test scores. Saving and loading
the result is utils/trained_model.py.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.stacked_cloze import Execution, Grouped
from utils.infra import distributed
from utils.cloze_steps import TrainStep, cube_batches, cube_errors, distributed_cube_errors
from utils.config import ClozeConfig
from utils.cubes import CubeStore
from utils.trained_model import TrainedBlocks, make_network


def train_block(model: nn.Module, store: CubeStore, indices: np.ndarray, cloze: ClozeConfig, device: str,
                generator: torch.Generator, progress: bool = True, label: str = "", rank: int = 0,
                world_size: int = 1) -> list[float]:
    """Train `model` in place on the cubes `indices`; returns the mean loss of each epoch.

    With world_size > 1, `model` is wrapped in DistributedDataParallel (`distributed.
    data_parallel`) and every rank calls this, each on its share of every global batch
    (`cloze_steps.TrainStep` scales the loss so that DDP's averaged gradient is the
    single-process one). On a GPU the step is captured in a CUDA graph (`cuda_graphs`).
    """
    step = TrainStep(model, learning_rate=cloze.learning_rate, lambda_raw=cloze.lambda_raw, lambda_of=cloze.lambda_of,
                     use_flow=cloze.use_flow, batch_size=cloze.batch_size, device=torch.device(device),
                     precision=cloze.precision, capture=cloze.cuda_graphs, world_size=world_size)
    model.train()
    epoch_losses = []
    n_batches = -(-len(indices) // cloze.batch_size)
    bar = tqdm(total=cloze.epochs * n_batches, desc=f"train{label}", unit="batch", disable=not progress)
    for epoch in range(cloze.epochs):
        # Summed on the device: reading a loss back each step would stall a GPU after every batch.
        total = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        batches = cube_batches(store, indices, cloze.batch_size, device, generator, rank, world_size)
        for index, (raw, flow) in enumerate(batches):
            batch_cubes = min(cloze.batch_size, len(indices) - index * cloze.batch_size)
            loss = step(raw, flow, batch_cubes)
            total += loss.double() * (len(raw) if world_size == 1 else batch_cubes / world_size)
            seen += len(raw)
            bar.update(1)
            if progress and (index % 50 == 0 or index == n_batches - 1):
                bar.set_postfix(epoch=epoch + 1, loss=f"{total.item() / max(seen, 1):.5f}")
        if world_size > 1:  # this rank's sum of per-cube losses -> the epoch's mean over all cubes
            counts = torch.stack([total, torch.tensor(float(seen), dtype=torch.float64, device=device)])
            total, seen = distributed.sum_over_ranks(counts).tolist()
        else:
            total = total.item()
        epoch_losses.append(total / seen)
    bar.close()
    return epoch_losses


def train_blocks(store: CubeStore, cloze: ClozeConfig, h_block: int, w_block: int, device: str, seed: int,
                 progress: bool = True, parallel: bool = False, execution: Execution | None = None) -> TrainedBlocks:
    """Train one network per block holding more than one cube (the reference's rule).

    `parallel`: every rank of the current torchrun group calls this with the same store;
    they train one DistributedDataParallel network per block (`train_block`) and split the
    training-score pass, each rank scoring its contiguous share of the block's cubes. Every
    rank returns the same TrainedBlocks. It runs the stacked network's `Grouped` execution:
    synchronised BatchNorm works through the BatchNorm modules, which only that execution
    calls (the others call F.batch_norm on views of their tensors). `execution` sets it
    for a single process (e.g. `Grouped()`, to compare with a torchrun run like for like;
    None: the network's default).
    """
    trained = TrainedBlocks([[None] * w_block for _ in range(h_block)], [[np.zeros(0)] * w_block for _ in range(h_block)],
                            [[np.zeros(0)] * w_block for _ in range(h_block)])
    for h in range(h_block):
        for w in range(w_block):
            members = store.block_members(h, w)
            if len(members) <= 1:
                continue
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            parallel_here = parallel and distributed.active()
            model = make_network(cloze, execution=Grouped() if parallel_here else execution).to(device)
            label = f" block ({h},{w})" if h_block * w_block > 1 else ""
            # One process is one rank of one: the model trains unwrapped and scores every cube itself.
            shares = (distributed.rank(), distributed.world_size()) if parallel_here else (0, 1)
            wrapped = distributed.data_parallel(model, device, cloze.network_raw_range is not None) if parallel_here else model
            train_block(wrapped, store, members, cloze, device, generator, progress, label, *shares)
            errors = distributed_cube_errors if parallel_here else cube_errors
            raw, of = errors(model, store, members, cloze.batch_size, device, cloze.use_flow, progress,
                             f"training-score pass{label}", cloze.precision, cloze.cuda_graphs)
            trained.states[h][w] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            trained.raw_scores[h][w] = raw
            trained.of_scores[h][w] = of if of is not None else np.zeros(0)
    return trained


