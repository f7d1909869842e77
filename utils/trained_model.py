"""The trained model: the cloze network a config describes, its files, and its networks built for scoring.

    make_network           the (stacked) cloze network of a ClozeConfig, fresh
    TrainedBlocks          per block [h][w]: a state dict and its training scores
    save_trained           the reference's three files + a manifest of settings and digests
    load_trained           files saved here (manifest checked) or by the reference code
    find_model             the model files in a folder (`--model DIR`)
    check_trained_fits     one line when a model does not fit the configured blocks and network
    block_networks         each block's network, loaded and in eval mode, for scoring

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
from torch import nn

from models import StackedClozeNet, build_cloze_network, strip_data_parallel_prefix
from models.stacked_cloze import Execution
from utils.config import ClozeConfig
from utils.infra.errors import VECError
from utils.infra.io import load_torch_file, remove_stale_temporaries, save_torch, sha256_file, write_json


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



@dataclass
class TrainedBlocks:
    """Per block [h][w]: a state dict (None: no model) and its training scores."""

    states: list[list[dict | None]]
    raw_scores: list[list[np.ndarray]]
    of_scores: list[list[np.ndarray]]


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


def block_networks(trained: TrainedBlocks, cloze: ClozeConfig, device: str, where: str = "the trained model",
                   execution: Execution | None = None) -> list[list[nn.Module | None]]:
    """Each block's network with its trained state, on `device`, in eval mode (None: no model);
    a state that does not fit the configured network is one line. `execution`: how the stacked
    networks run (None: their default)."""
    networks = []
    for row in trained.states:
        networks.append([])
        for state in row:
            network = None
            if state is not None:
                network = make_network(cloze, execution=execution)
                try:
                    network.load_state_dict(state)
                except RuntimeError as err:
                    first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
                    raise VECError(f"{where} does not fit the configured network (nf = {cloze.nf}, "
                                   f"context_of_num = {cloze.context_of_num}): {first}; set them as when it was "
                                   "trained, or rerun `python train.py`") from None
                network.to(device).eval()
            networks[-1].append(network)
    return networks
