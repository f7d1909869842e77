"""Box files in the reference's format: `<dataset folder>/bboxes_<train|test>_<mode>.npy`.

An object array with one (n, 4) array per frame. Files made by the reference code
(downloadable from its repository) are read as they are; reading accepts numpy arrays
only, never arbitrary pickled objects.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.infra.errors import VECError
from utils.infra.io import remove_stale_temporaries, save_npy, write_json


def box_file_path(dataset_dir: Path, split: str, mode: str) -> Path:
    return Path(dataset_dir) / f"bboxes_{split}_{mode}.npy"


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a box file cannot run code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a box file")


def load_box_file(path: Path, n_frames: int | None = None) -> list[np.ndarray]:
    """Per-frame (n, 4) box arrays from a box file, checked against the split's frame count."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = header(f)
            if dtype.hasobject:
                array = _ArraysOnlyUnpickler(f).load()
            else:
                f.seek(0)
                array = np.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
        raise VECError(f"box file {path} is truncated or not a box file ({str(err) or type(err).__name__}); "
                       "delete it to recompute the boxes") from None
    frames = [np.asarray(b).reshape(-1, 4) if np.size(b) else np.zeros((0, 4), np.float32) for b in array]
    if n_frames is not None and len(frames) != n_frames:
        raise VECError(f"box file {path} has boxes for {len(frames)} frames but the split has {n_frames}; "
                       "delete it (or set *_bbox_saved = False) to recompute the boxes")
    return frames


def settings_path(path: Path) -> Path:
    """`bboxes_<split>_<mode>.json` beside the box file: the settings that made it."""
    return Path(path).with_suffix(".json")


def read_box_settings(path: Path) -> dict | None:
    """The settings a box file was made with, or None (a file made elsewhere, e.g. by the reference)."""
    try:
        return json.loads(settings_path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def save_box_file(path: Path, boxes: Sequence[np.ndarray], settings: dict | None = None) -> None:
    """Save per-frame boxes as the reference does (object array), atomically, with the settings beside it."""
    array = np.empty(len(boxes), dtype=object)
    for i, b in enumerate(boxes):
        array[i] = b
    settings_path(path).unlink(missing_ok=True)
    remove_stale_temporaries([path, settings_path(path)])  # of a killed run
    save_npy(path, array, allow_pickle=True)
    if settings is not None:
        write_json(settings_path(path), settings)
