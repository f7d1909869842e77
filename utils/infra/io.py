"""Files on disk: atomic writes, safe loading of torch files, JSON, and seeding.

Every file the pipeline writes goes through `atomic_file` or `atomic_dir`: the result
appears under its final name only once it is complete, and a failure (an exception, a
full disk) removes what was half-written. Work in progress has a hidden name (`.<name>.…`),
so what a killed run leaves never looks like a result. A write that fails for a reason
the user can fix (full disk, no permission, a file where a folder should be) becomes one
`VECError` line naming the path; a reason is named only when the error's errno says so.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
import torch

from utils.infra.errors import VECError

# OSErrors that mean "fix your disk or folders", not "bug in the code".
_USER_FIXABLE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                 errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                 errno.EROFS: "the file system is read-only", errno.ENOTDIR: "a parent of it is a file, not a folder",
                 errno.EISDIR: "it is a folder", errno.EEXIST: "a file of that name is in the way"}


def user_error_for(err: OSError, path: Path) -> VECError | None:
    """A one-line VECError for an OSError the user can fix, else None."""
    reason = _USER_FIXABLE.get(err.errno)
    return VECError(f"cannot write {path}: {reason}; free space or fix the folder and rerun") if reason else None


def _errno_in_chain(err: BaseException) -> OSError | None:
    """The first OSError with an errno among `err` and its causes (torch and OpenCV wrap them)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err
        err = err.__cause__ or err.__context__
    return None


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in chunks (hex digest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def make_dirs(path: Path) -> Path:
    """`mkdir -p` with a one-line error when it cannot be done."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise VECError(f"cannot create folder {path}: a file of that name (or a parent's) is in the way; "
                       "move it or choose another folder in config.cfg") from None
    except OSError as err:
        raise (user_error_for(err, path) or err) from None
    return path


def check_can_create(path: Path) -> None:
    """Fail now, in one line, if folder `path` could not be created later (without creating it)."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise VECError(f"cannot create folder {path}: {existing} is a file, in the way; "
                       "move it or choose another folder in config.cfg")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VECError(f"cannot create folder {path}: no permission to write in {existing}")


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write `path` through a temporary file beside it, renamed over `path` on success."""
    path = Path(path)
    make_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as f:
            yield f
            f.flush()
        os.replace(temporary, path)
    except BaseException as err:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(err, OSError) and user_error_for(err, path):
            raise user_error_for(err, path) from None
        if isinstance(err, RuntimeError) and "enforce fail" in str(err):  # torch.save's failed write
            cause = _errno_in_chain(err)
            if cause is not None and user_error_for(cause, path):
                raise user_error_for(cause, path) from None
            first = (str(err).strip().splitlines() or ["write failed"])[0][:200]
            raise VECError(f"cannot write {path}: torch.save failed ({first}); "
                           f"{free_space_note(path.parent)}") from None
        raise


def free_space_note(folder: Path) -> str:
    """`<N> MiB free in <folder>`: what a user needs to judge a failed write whose errno is unknown."""
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free in {folder}"
    except OSError:
        return f"the free space of {folder} is unknown"


def remove_stale_temporaries(paths: Iterable[Path]) -> int:
    """Delete the temporary files `atomic_file` left beside `paths` when a run was killed (SIGKILL
    gives it no chance to clean up). Call it only for paths this process alone writes: another
    writer's temporary would vanish under it. Lists each folder once. Returns how many were removed."""
    names_by_folder: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        names_by_folder.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, names in names_by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            # atomic_file names them ".<name>.<random>.tmp"
            if entry.name.startswith(".") and entry.name.endswith(".tmp") \
                    and entry.name[1:].rsplit(".", 2)[0] in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _work_name(path: Path, kind: str) -> Path:
    """`.<name>.<pid>@<host>.<random>.<kind>` beside `path`: hidden, saying whose it is, and unique
    (two threads of a process building the same folder get two names)."""
    return path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.{os.urandom(4).hex()}.{kind}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_work(path: Path) -> int:
    """Delete what `atomic_dir` left beside `path` when a run on this host was killed (its process is
    gone); another live process's folder is kept. Returns how many were removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)@" + re.escape(_HOST) + r"\.[0-9a-f]+\.(partial|old)")
    removed = 0
    if not path.parent.is_dir():
        return 0
    legacy = path.with_name(path.name + ".partial")  # the visible name earlier versions built under
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
        removed += 1
    for entry in os.scandir(path.parent):
        found = pattern.fullmatch(entry.name)
        if found and not _pid_alive(int(found.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """rmdir each of `folders` (deepest first) until one is not empty: the folders a failed step made."""
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            break


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a folder under a hidden name of this process (`.<name>.<pid>@<host>.<random>.partial`), renamed to
    `path` (replacing it) on success, removed on failure (with the parent folders it made).

    Two processes building the same folder do not disturb each other (the last one's folder
    stays); what a killed run left is removed by the next one on the same host.
    """
    path = Path(path)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    make_dirs(path.parent)
    remove_stale_work(path)
    partial = _work_name(path, "partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_dirs(partial)
    try:
        yield partial
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        remove_empty_folders(created)
        if isinstance(err, OSError) and user_error_for(err, path):
            raise user_error_for(err, path) from None
        raise
    old = _work_name(path, "old")
    try:
        for _ in range(3):  # another process may put its own folder in place between two renames
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.rename(path, old)  # aside first: `path` is never a mix of two folders
            try:
                os.rename(partial, path)
                break
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        else:
            raise VECError(f"cannot put {path} in place: other processes keep replacing it; "
                           "run one at a time")
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise (user_error_for(err, path) or err) from None
    finally:
        shutil.rmtree(old, ignore_errors=True)


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """A one-line error before a large write that cannot fit (with a 5 % margin)."""
    free = shutil.disk_usage(folder).free
    if needed * 1.05 > free:
        raise VECError(f"not enough disk space for {what} in {folder}: about {needed / 2**20:.0f} MiB needed, "
                       f"{free / 2**20:.0f} MiB free; free some space or point the folder elsewhere in config.cfg")


def preallocated_npy(path: Path, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A memory-mapped `.npy` whose blocks are reserved now, so a full disk is an error here
    and not a SIGBUS when the map is written later."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as err:
        del array
        raise (user_error_for(err, path) or err) from None
    return array


def save_npy(path: Path, array: np.ndarray, allow_pickle: bool = False) -> None:
    with atomic_file(path) as f:
        np.save(f, array, allow_pickle=allow_pickle)


def save_torch(path: Path, obj) -> None:
    with atomic_file(path) as f:
        torch.save(obj, f)


def write_json(path: Path, data: dict) -> None:
    with atomic_file(path, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar
    dtype_classes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdg"]
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), scalar,
            (scalar, "numpy.core.multiarray.scalar"), np.ndarray, np.dtype, *dtype_classes]


_HEAD_BYTES = 512


def not_a_torch_file(path: Path) -> str | None:
    """What `path` is when its first bytes show it cannot be a torch.save file: "an HTML page",
    "a text file (...)", "empty (0 bytes)" or "a file of another kind (...)"; None when it may be one.

    torch.save writes a zip archive (since torch 1.6) or a pickle of protocol 2 or later; torch
    before 1.0 wrote a tar archive. An HTML page is what a refused download saves (Google Drive's
    quota page), and of it torch itself would only say "Unsupported operand 60" ('<')."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if not head:
        return "empty (0 bytes)"
    if head.startswith(b"PK") or (head[0] == 0x80 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) \
            or head[257:262] == b"ustar":
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and any(tag in text for tag in (b"<html", b"<!doctype html", b"<head", b"<body")):
        return "an HTML page"
    try:
        decoded = head.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as err:  # a character the read cut in two at its end is still text
        cut = len(head) == _HEAD_BYTES and err.start >= len(head) - 3
        decoded = head[:err.start].decode("utf-8").lstrip("\ufeff") if cut else None
    if decoded is not None and decoded.strip() and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        first = one_line_text(decoded.strip().splitlines()[0], 40)
        return f"a text file (it starts with {first!r})"
    return f"a file of another kind (it starts with the bytes {head[:8].hex(' ')})"


def one_line_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_torch_file(path: Path, device: str = "cpu"):
    """`torch.load` with weights_only=True, numpy arrays allowed (the reference saved some).

    Numpy arrays are not among the types weights_only accepts by default, so the few numpy
    globals an array needs are allowed, under their numpy 1 and numpy 2 names. Anything
    else that would run code is refused with one line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    what = not_a_torch_file(path)
    if what is not None:
        raise VECError(f"{path} is {what}, not a torch file; delete it and rerun the step that makes it")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise VECError(f"{path} holds objects that cannot be loaded safely ({reason}); "
                       "re-save it with plain tensors, arrays and dicts") from None
    except Exception as err:  # a cut or foreign file fails inside torch.load in many ways (EOF, zip, index)
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise VECError(f"{path} is truncated or not a torch file ({reason}); "
                       "delete it and rerun the step that makes it") from None


def load_state_dict_file(path: Path, missing_hint: str) -> dict | None:
    """The weights of a checkpoint file: its `state_dict` entry, or the file itself when it is a
    plain state dict; None when it holds neither. A missing file is a one-line error ending in `missing_hint`."""
    path = Path(path)
    if not path.is_file():
        raise VECError(f"{path} not found: {missing_hint}")
    checkpoint = load_torch_file(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    return state if isinstance(state, dict) else None


def seed_everything(seed: int, device: str = "cpu") -> None:
    """Seed torch and numpy; on a GPU also ask for deterministic kernels (docs/reproducibility.md)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    if str(device).startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def reproducibility_record(device: str) -> dict:
    """What a rerun must match to give the same bytes: versions, device and CPU thread count."""
    return {"torch": torch.__version__, "numpy": np.__version__, "device": str(device),
            "torch_threads": torch.get_num_threads()}
