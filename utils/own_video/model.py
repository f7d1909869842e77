"""Which trained model scores your own videos: the configured dataset's, or another run's (`--model DIR`)."""
from __future__ import annotations

from pathlib import Path

from utils.config import RunConfig
from utils.errors import VECError
from utils.training import TrainedBlocks, load_trained, make_network


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
    ds = cfg.dataset
    if len(trained.states) != ds.h_block or any(len(row) != ds.w_block for row in trained.states):
        raise VECError(f"{where} has {len(trained.states)}x{len(trained.states[0])} blocks but [{cfg.dataset_name}] "
                       f"sets h_block = {ds.h_block}, w_block = {ds.w_block}; "
                       "score with the config it was trained with")
    state = next((s for row in trained.states for s in row if s is not None), None)
    if state is None:
        raise VECError(f"{where} holds no trained network (every block had too few training cubes)")
    try:
        make_network(cfg.cloze).load_state_dict(state)
    except RuntimeError:
        raise VECError(f"{where} does not fit the cloze settings of [{cfg.dataset_name}] (nf = {cfg.cloze.nf}, "
                       f"context_of_num = {cfg.cloze.context_of_num}, use_flow = {cfg.cloze.use_flow}); "
                       "score with the config it was trained with") from None
    return trained, where
