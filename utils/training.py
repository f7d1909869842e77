"""Training the cloze networks on the cubes of each block (docs/method.md §6), and storing them.

Per block: Adam, shuffled batches, loss = lambda_raw·MSE(raw) + lambda_of·MSE(flow);
then one eval-mode pass over the training cubes gives each cube's raw and flow score
(sum of squared errors), whose mean and std normalise the test scores.

Saved files keep the reference's names and structure (`data/raw2flow/<dataset>_model_
<mode>_SelfComplete.npy` etc.: nested [h][w] lists, state dicts with DataParallel's
'module.' prefix), so models trained by the reference code load here and vice versa.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models import StackedClozeNet, build_cloze_network, strip_data_parallel_prefix
from models.stacked_cloze import Execution, Grouped
from utils import distributed
from utils.cloze_steps import ErrorStep, TrainStep, cube_batches
from utils.config import ClozeConfig
from utils.cubes import CubeStore
from utils.errors import VECError
from utils.io import load_torch_file, remove_stale_temporaries, save_torch, sha256_file, write_json


def make_network(cloze: ClozeConfig, stacked: bool = True, execution: Execution | None = None) -> nn.Module:
    """The cloze network: its U-Nets run as one (models/stacked_cloze/) unless `stacked` is False.

    Both give the same initial weights for the same seed and have the reference's state-dict keys.
    `execution`: how the stacked network runs (models.stacked_cloze.execution; None: its default,
    chosen by device).
    """
    network = build_cloze_network(cloze.nf, cloze.tot_raw_num, cloze.tot_of_num, cloze.border_mode,
                                  cloze.network_raw_range, cloze.use_flow, cloze.padding)
    if not stacked:
        return network
    stacked_network = StackedClozeNet(network)
    if execution is not None:
        stacked_network.execution = execution
    return stacked_network


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


def cube_errors(model: nn.Module, store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                use_flow: bool, progress: bool = False, label: str = "errors", precision: str = "fp32",
                cuda_graphs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-cube raw and flow scores: the SUM of squared completion errors (eval mode)."""
    model.eval()
    step = ErrorStep(model, use_flow=use_flow, batch_size=batch_size, device=torch.device(device),
                     precision=precision, capture=cuda_graphs)
    raw_scores, of_scores = [], []
    batches = cube_batches(store, indices, batch_size, device)
    for raw, flow in tqdm(batches, total=-(-len(indices) // batch_size), desc=label, unit="batch", disable=not progress):
        raw_sse, of_sse = step(raw, flow)
        raw_scores.append(raw_sse)
        of_scores.append(of_sse)
    empty = np.zeros(0)
    if not raw_scores:
        return empty, (empty if use_flow else None)

    def gathered(parts: list[Tensor]) -> np.ndarray:
        # One copy to the host at the end, out of the tensors: numpy views would keep small torch
        # allocations alive, which pins the freed batch buffers around them.
        return torch.cat(parts).double().cpu().numpy().copy()

    return gathered(raw_scores), (gathered(of_scores) if use_flow else None)


def distributed_cube_errors(model: nn.Module, store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                            use_flow: bool, progress: bool = False, label: str = "errors",
                            precision: str = "fp32", cuda_graphs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """`cube_errors` of `indices` with each rank of the torchrun group scoring its contiguous share,
    gathered in the order of `indices` on every rank (plain `cube_errors` in a single process)."""
    raw, of = cube_errors(model, store, distributed.shard(indices), batch_size, device, use_flow, progress, label,
                          precision, cuda_graphs)
    parts = distributed.gather_objects((raw, of))
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]) if use_flow else None)


@dataclass
class TrainedBlocks:
    """Per block [h][w]: a state dict (None: no model) and its training scores."""

    states: list[list[dict | None]]
    raw_scores: list[list[np.ndarray]]
    of_scores: list[list[np.ndarray]]


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


def _file_names(work_dir: Path, dataset_name: str, mode: str, method: str) -> tuple[Path, Path, Path]:
    stem = Path(work_dir) / dataset_name
    return (Path(f"{stem}_model_{mode}_{method}.npy"), Path(f"{stem}_raw_training_scores_{mode}_{method}.npy"),
            Path(f"{stem}_of_training_scores_{mode}_{method}.npy"))


def manifest_path(work_dir: Path, dataset_name: str, mode: str, method: str) -> Path:
    """`<dataset>_model_<mode>_<method>.json`: the settings a model was trained with and its files' digests."""
    return Path(f"{Path(work_dir) / dataset_name}_model_{mode}_{method}.json")


def save_trained(trained: TrainedBlocks, work_dir: Path, dataset_name: str, mode: str, method: str,
                 scene_level: bool, settings: dict | None = None) -> list[Path]:
    """Save in the reference's structure; `scene_level` adds ShanghaiTech's outer scene list.

    The three files keep the reference's names and format. A manifest written last holds
    `settings` and each file's SHA-256, so a run killed between the files (a new model
    beside old statistics) is caught when loading, not scored.
    """
    model_path, raw_path, of_path = _file_names(work_dir, dataset_name, mode, method)
    models = [[[{"module." + k: v for k, v in s.items()}] if s is not None else [] for s in row] for row in trained.states]
    raw = [[torch.from_numpy(np.asarray(a)) for a in row] for row in trained.raw_scores]
    of = [[torch.from_numpy(np.asarray(a)) for a in row] for row in trained.of_scores]
    manifest = manifest_path(work_dir, dataset_name, mode, method)
    manifest.unlink(missing_ok=True)  # until the new one is written, the files are not a finished model
    remove_stale_temporaries([model_path, raw_path, of_path, manifest])  # of a run killed while saving
    for obj, path in ((models, model_path), (raw, raw_path), (of, of_path)):
        save_torch(path, [obj] if scene_level else obj)
    write_json(manifest, {"settings": settings or {},
                          "files": {p.name: sha256_file(p) for p in (model_path, raw_path, of_path)}})
    return [model_path, raw_path, of_path, manifest]


def _check_manifest(manifest: Path, paths: tuple[Path, ...], settings: dict | None) -> None:
    try:
        recorded = json.loads(manifest.read_text())
        files, trained_with = recorded["files"], recorded["settings"]
    except (ValueError, KeyError, TypeError):
        raise VECError(f"{manifest} is corrupt; rerun `python train.py`") from None
    for path in paths:
        if files.get(path.name) != sha256_file(path):
            raise VECError(f"{path} is not the file {manifest.name} was saved with (a training run was interrupted "
                           "while saving, or the files were mixed); rerun `python train.py`")
    changed = [f"{key} = {trained_with[key]!r} when trained, {value!r} now" for key, value in (settings or {}).items()
               if key in trained_with and trained_with[key] != value]
    if changed:
        raise VECError(f"the model in {manifest.parent} was trained with other settings ({'; '.join(changed)}); "
                       "rerun `python train.py` or set them back")


def find_model(model_dir: Path, preferred: str, mode: str, method: str, modality: str) -> tuple[Path, str]:
    """(folder, dataset name) of the trained model in `model_dir` (or in `model_dir/<modality>`).

    Model files are `<dataset>_model_<mode>_<method>.npy`; the configured dataset's is taken
    when there, else the folder's only one.
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise VECError(f"--model {model_dir} is not a folder; pass the folder holding a run's trained model files "
                       "(such as data/raw2flow or data/video_sets/<set>/raw2flow)")
    suffix = f"_model_{mode}_{method}.npy"
    names, folder = [], model_dir
    for folder in (model_dir, model_dir / modality):
        names = sorted(p.name[:-len(suffix)] for p in folder.glob("*" + suffix)) if folder.is_dir() else []
        if names:
            break
    if not names:
        raise VECError(f"--model {model_dir} holds no trained model (*{suffix}); train one with `python train.py` "
                       "or `python train.py --videos DIR`")
    if preferred in names:
        return folder, preferred
    if len(names) > 1:
        raise VECError(f"--model {folder} holds the models of several datasets ({', '.join(names)}) and none is "
                       f"the configured {preferred}; pass a folder holding one of them")
    return folder, names[0]


def load_trained(work_dir: Path, dataset_name: str, mode: str, method: str, scene_level: bool,
                 settings: dict | None = None) -> TrainedBlocks:
    """Load models and training scores saved here or by the reference code.

    Files saved here come with a manifest: they must be the files it lists and have been
    trained with the same `settings`. The reference's files have none and load as they are.
    """
    paths = _file_names(work_dir, dataset_name, mode, method)
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise VECError(f"trained model file {missing} not found; run `python train.py` first "
                       "(or copy the reference's trained files into that folder)")
    manifest = manifest_path(work_dir, dataset_name, mode, method)
    if manifest.is_file():
        _check_manifest(manifest, paths, settings)
    models, raw, of = (load_torch_file(p) for p in paths)
    if scene_level:  # ShanghaiTech: one scene in the reference's setting
        models, raw, of = models[0], raw[0], of[0]
    states = [[strip_data_parallel_prefix(cell[0]) if len(cell) else None for cell in row] for row in models]

    def as_arrays(nested):
        return [[np.asarray(c.numpy() if isinstance(c, torch.Tensor) else c, dtype=np.float64).ravel()
                 if not isinstance(c, list) else np.zeros(0) for c in row] for row in nested]

    return TrainedBlocks(states, as_arrays(raw), as_arrays(of))


def check_trained_fits(trained: TrainedBlocks, h_block: int, w_block: int, cloze: ClozeConfig, where: str,
                       section: str) -> None:
    """One line when the model in `where` was not trained with the blocks and cloze settings of
    [`section`]: its states load into the configured network, block by block."""
    if len(trained.states) != h_block or any(len(row) != w_block for row in trained.states):
        raise VECError(f"{where} has {len(trained.states)}x{len(trained.states[0])} blocks but [{section}] "
                       f"sets h_block = {h_block}, w_block = {w_block}; score with the config it was trained with")
    states = [s for row in trained.states for s in row if s is not None]
    if not states:
        raise VECError(f"{where} holds no trained network (every block had too few training cubes)")
    network = make_network(cloze)
    for state in states:
        try:
            network.load_state_dict(state)
        except RuntimeError:
            raise VECError(f"{where} does not fit the cloze settings of [{section}] (nf = {cloze.nf}, "
                           f"context_of_num = {cloze.context_of_num}, use_flow = {cloze.use_flow}); "
                           "score with the config it was trained with") from None
