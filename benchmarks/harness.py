"""The timing harness every benchmark shares.

A row times a few variants of one step (e.g. the reference-equivalent path and the fast
paths). After untimed warm-up steps, the variants run interleaved, every other repeat in
reverse order (A B, B A, A B, ...), so that a machine whose speed drifts (a shared virtual
machine: ±25 % from one moment to the next) slows the compared variants alike. A result
is the rate of each repeat; the table gives their median and, as the ratio to the row's
base, the median over repeats of the ratio within a repeat. On CUDA, steps are
synchronised and the peak GPU memory of each variant's warm-up is kept; a child process's
peak RSS comes from the kernel (`run_child`).
"""
from __future__ import annotations

import atexit
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch


@dataclass
class Result:
    """One measured quantity of one variant: a rate (higher is better) per repeat, and peak memory."""

    row: str
    metric: str  # e.g. "train cubes/s"
    variant: str
    rates: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, times: int = 1) -> float:
    """Seconds for `times` calls of fn, the device's queued work included."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(times):
        fn()
    synchronize(device)
    return time.perf_counter() - started


def interleaved(row: str, metric: str, steps: dict[str, Callable[[], object]], items_per_step: int,
                device: torch.device, warmup: int, repeats: int, steps_per_repeat: int = 1) -> list[Result]:
    """Time each variant's step `repeats` times (`steps_per_repeat` steps each: one on a CPU, tens on a GPU,
    whose single steps are too short to time), variants interleaved, after `warmup` untimed steps each."""
    results = {name: Result(row, metric, name) for name in steps}
    for name, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step()
        synchronize(device)
        if device.type == "cuda":
            results[name].peak_bytes = torch.cuda.max_memory_allocated(device)
    names = list(steps)
    for repeat in range(repeats):
        # Every other repeat in reverse order, so that no variant always runs right after the same one.
        for name in (names if repeat % 2 == 0 else names[::-1]):
            results[name].rates.append(items_per_step * steps_per_repeat / timed(steps[name], device, steps_per_repeat))
    return list(results.values())


def paired_ratio(result: Result, base: Result) -> float:
    """Median over repeats of the rate ratio within each repeat: a drift of the machine's speed between
    repeats moves both rates of a repeat, not their ratio."""
    if len(result.rates) != len(base.rates):
        return result.median / base.median
    return statistics.median(r / b for r, b in zip(result.rates, base.rates))


def print_table(results: list[Result], baseline: str = "reference") -> None:
    """One line per result: median rate, ratio to the `baseline` variant of the same row and metric, peak memory
    (MiB), every repeat's rate."""
    header = ("row", "metric", "variant", "median", "ratio", "peak MiB", "repeats")
    lines = []
    for r in results:
        base = next((b for b in results if (b.row, b.metric, b.variant) == (r.row, r.metric, baseline)), None)
        lines.append((r.row, r.metric, r.variant, f"{r.median:.2f}", f"{paired_ratio(r, base):.2f}x" if base else "",
                      f"{r.peak_bytes / 2 ** 20:.0f}" if r.peak_bytes is not None else "-",
                      " ".join(f"{v:.2f}" for v in r.rates)))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, *lines]:
        print("  ".join(f"{cell:<{w}}" if i < 3 or i == 6 else f"{cell:>{w}}"
                        for i, (cell, w) in enumerate(zip(line, widths))).rstrip())


@dataclass
class ChildRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int  # wait4's ru_maxrss: at least the parent's own peak, which the kernel carries over fork + exec


def run_child(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> ChildRun:
    """Run a process to its end; its output goes through files (no pipe to fill), its peak memory comes from
    wait4 (Linux, macOS)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(child.returncode, out.read(), err.read(), seconds, usage.ru_maxrss)


_SCRATCH: list[Path] = []


def scratch_dir(parent: str | None, prefix: str) -> Path:
    """A new folder under `parent` (the system's temporary folder when None), removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if not _SCRATCH:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _SCRATCH])
    _SCRATCH.append(path)
    return path
