"""Per-frame 0/1 labels of a user's video (`test.py --video … --labels FILE …`), for its AUROC."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.infra.errors import VECError


def read_labels(path: Path) -> np.ndarray:
    """Per-frame 0/1 labels: a `.txt` with one value per line (any whitespace) or a `.npy` array."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VECError(f"labels file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise VECError(f"labels file {path} is not a numpy array file ({str(err).splitlines()[0]})") from None
    elif suffix == ".txt":
        try:
            values = np.asarray([float(token) for token in path.read_text().split()])
        except (ValueError, UnicodeDecodeError):
            raise VECError(f"labels file {path} must hold one 0 or 1 per frame, separated by white space") from None
    else:
        raise VECError(f"labels file {path} must be a .txt (one 0 or 1 per line) or a .npy array")
    values = np.asarray(values).ravel()
    if values.dtype.kind not in "biuf":
        raise VECError(f"labels file {path} must hold numbers 0 and 1, not {values.dtype}")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if len(bad):
        raise VECError(f"labels file {path}: entry {bad[0]} is {values[bad[0]]!r}; every entry must be 0 or 1")
    return values.astype(np.int64)


def check_label_counts(labels: list[np.ndarray], label_files: list[Path], counts: list[int | None],
                       videos: list[Path]) -> None:
    """One 0/1 per frame: `counts[i]` is video i's number of frames (None: not known yet)."""
    for values, file, count, video in zip(labels, label_files, counts, videos):
        if count is not None and len(values) != count:
            raise VECError(f"labels file {file} has {len(values)} entries but {video} has {count} frames; "
                           "give one 0/1 per frame")
