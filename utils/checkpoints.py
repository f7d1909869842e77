"""Loading torch files safely (`weights_only=True`), including the reference's files.

The reference saved its models and training scores with `torch.save` as nested lists
holding state dicts and numpy arrays. Numpy arrays are not among the types
`weights_only` accepts by default, so the few numpy globals an array needs are allowed
explicitly, under both their numpy 1 (`numpy.core`) and numpy 2 (`numpy._core`) names.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from utils.errors import VECError


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar
    dtype_classes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdg"]
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), scalar,
            (scalar, "numpy.core.multiarray.scalar"), np.ndarray, np.dtype, *dtype_classes]


def load_torch_file(path: Path, device: str = "cpu"):
    """`torch.load` with weights_only=True and numpy arrays allowed; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise VECError(f"{path} holds objects that cannot be loaded safely ({reason}); "
                       "re-save it with plain tensors, arrays and dicts") from None
