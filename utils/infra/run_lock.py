"""One run at a time per work folder: a lock file held with `flock` for the run's duration.

Two runs writing the same frames, flow, boxes or cubes would delete or overwrite each
other's files half-way. A run takes `<work folder>/.<dataset>.lock` (the config's
data_root_dir and dataset_name; for your own videos the video's folder under data/videos/)
before it writes there; a second run stops at once with one line naming the first (pid,
host, since when, its command line). The kernel releases a flock when its process ends,
however it ends, so a killed run never leaves a lock that blocks.

Under torchrun the ranks of one run share the folder: rank 0 takes the lock and tells the
others whether it got it, so they stop together or go on together. Held locks are
re-entrant within a process (a stage called inside another stage of the same run).
"""
from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from utils.infra import distributed
from utils.infra.errors import VECError, VECWarning
from utils.infra.io import make_dirs, remove_empty_folders

F = TypeVar("F", bound=Callable)

_held: dict[str, int] = {}  # lock file → how many nested `run_lock`s of this process hold it
# flock is unsupported on some network file systems; then the run goes on unlocked, with a warning.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def lock_file(data_root_dir: Path, dataset_name: str) -> Path:
    """The lock of the runs that write the derived files of `dataset_name` below `data_root_dir`."""
    return Path(data_root_dir) / f".{dataset_name}.lock"


def exclusive(function: F) -> F:
    """Decorator for a pipeline step `function(cfg, ...)`: hold cfg's work-folder lock while it runs."""

    @functools.wraps(function)
    def locked(cfg, *args, **kwargs):
        with run_lock(lock_file(cfg.data_root_dir, cfg.dataset_name)):
            return function(cfg, *args, **kwargs)

    return locked  # type: ignore[return-value]


@contextmanager
def run_lock(path: Path, in_use: Path | str | None = None) -> Iterator[None]:
    """Hold lock file `path` (created with its folders, removed with the folders it created on release);
    `in_use`: what the error names as in use by another run (default: the lock's folder)."""
    key = str(Path(path).absolute())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    lock, failure = None, None
    if distributed.is_main():
        try:
            lock = _acquire(Path(key), Path(key).parent if in_use is None else in_use)
        except BaseException as err:  # told to the other ranks before it is raised here
            failure = err
    message = distributed.broadcast_object(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    if message is not None:
        raise VECError(message)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        if lock is not None:
            _release(*lock)


def _acquire(path: Path, in_use: Path | str) -> tuple[int | None, Path, list[Path]] | None:
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    while True:
        make_dirs(path.parent)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed by a run releasing its lock: make it again
            continue
        except OSError as err:
            raise VECError(f"cannot create the lock file {path} ({err.strerror}); "
                           "check the folder's permissions") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            os.close(handle)
            raise VECError(f"{in_use} is in use by another run ({holder}); wait for it to finish "
                           "(or stop it) and rerun") from None
        except OSError as err:
            os.close(handle)
            if err.errno not in _NO_LOCKING:
                raise
            warnings.warn(f"cannot lock {path} on this file system ({err.strerror}); make sure no other run "
                          f"uses {path.parent} at the same time", VECWarning, stacklevel=4)
            return None
        # A run that released the lock unlinks the file: locking that unlinked file locks nothing.
        try:
            same = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)
    _write_holder(handle)
    return handle, path, created


def _release(handle: int, path: Path, created: list[Path]) -> None:
    try:
        path.unlink(missing_ok=True)  # while still holding it, so no one locks the unlinked file
    finally:
        os.close(handle)
    remove_empty_folders(created)  # those this lock made, when the run left nothing in them


def _write_holder(handle: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""}
    os.ftruncate(handle, 0)
    os.pwrite(handle, (json.dumps(record) + "\n").encode(), 0)


def _read_holder(handle: int) -> str:
    try:
        record = json.loads(os.pread(handle, 4096, 0).decode())
        where = "" if record["host"] == socket.gethostname() else f" on {record['host']}"
        command = f", `{record['command']}`" if record.get("command") else ""
        return f"pid {record['pid']}{where}, since {record['since']}{command}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not written yet"
