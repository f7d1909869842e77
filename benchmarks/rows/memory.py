"""Row "memory": training's peak memory on a ShanghaiTech-sized cube store, against one ten times smaller.

A synthetic cube store of --cubes N cubes and one of N/10 (benchmarks/synthetic.py), each
dropped from the page cache once written; for each, one child process (this module run with
`python -m benchmarks.rows.memory`) trains for --cube-steps batches drawn from the whole
store (train_block; 0: one epoch), then runs cube_errors on --score-cubes cubes spread over
it. Reported: the child's peak RSS (its VmHWM; wait4's ru_maxrss is printed too, but it is
never below this process's own peak, which the kernel carries over fork + exec), split into
anonymous memory and the store's pages mapped by the memory map (page cache, growing with the
cubes read, not with the cubes stored).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Result, run_child, scratch_dir
from benchmarks.synthetic import store_bytes, write_synthetic_store
from utils.config import ClozeConfig
from utils.cubes import CubeStore
from utils.infra.errors import VECError
from utils.infra.io import require_free_space
from utils.cloze_steps import cube_errors
from utils.trained_model import make_network
from utils.training import train_block

REPO = Path(__file__).resolve().parents[2]


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("row memory")
    group.add_argument("--cubes", type=int, default=270000, metavar="N",
                       help="synthetic stores of N and N/10 cubes (ShanghaiTech-sized: 270000; N cubes take "
                            "N x 56 KiB of disk)")
    group.add_argument("--cube-steps", type=int, default=200,
                       help="training steps (batches of --batch) drawn from the whole store; 0: an epoch")
    group.add_argument("--score-cubes", type=int, default=8192, help="cubes of the cube_errors pass")


def proc_status(key: str) -> int:
    """A field of /proc/self/status in kB (Linux); 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def train_and_score(store_dir: str, device: str, nf: int, batch: int, steps: int, score_cubes_n: int) -> dict:
    """What the child runs: train on the store for `steps` batches drawn from all its cubes (train_block →
    cube_batches; steps 0: one whole epoch), then cube_errors on `score_cubes_n` cubes spread over it.
    Returns its counts, seconds and memory peaks (sampled every 10 ms: the kernel keeps no high-water
    mark of anonymous and file-backed memory apart)."""
    peak_anon, peak_file, done = [0], [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], proc_status("RssAnon"))
            peak_file[0] = max(peak_file[0], proc_status("RssFile"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    store = CubeStore.open(Path(store_dir))
    members = store.block_members(0, 0)  # as train_blocks does
    rng = np.random.default_rng(0)
    chosen = members if steps == 0 else np.sort(rng.choice(members, min(len(members), steps * batch), replace=False))
    cloze = ClozeConfig(nf=nf, batch_size=batch, epochs=1)
    torch.manual_seed(0)
    model = make_network(cloze).to(device)
    train_block(model, store, chosen, cloze, device, torch.Generator().manual_seed(0), progress=False)
    spread = np.unique(np.linspace(0, len(store) - 1, min(len(store), score_cubes_n)).astype(np.int64))
    cube_errors(model, store, spread, batch, device, use_flow=True)
    done.set()
    sampler.join()
    return {"cubes": len(store), "trained_on": len(chosen), "scored": len(spread),
            "seconds": time.perf_counter() - started,
            "peak_anon_kib": max(peak_anon[0], proc_status("RssAnon")),
            "peak_file_kib": max(peak_file[0], proc_status("RssFile")),
            "rss_file_kib_at_end": proc_status("RssFile"), "vm_hwm_kib": proc_status("VmHWM"),
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None}


def row_memory(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Training's peak RSS on a ShanghaiTech-sized store of --cubes N cubes and on one of N/10."""
    big = args.cubes
    sizes = [max(1, big // 10), big]
    root = scratch_dir(args.tmp_dir, "vec_memory_")
    try:
        require_free_space(root, store_bytes(big), f"a synthetic store of {big} cubes")
    except VECError as err:
        print(f"memory row skipped: {str(err).split('; free some')[0]}; point --tmp-dir elsewhere or lower --cubes")
        return []
    steps = "one epoch" if args.cube_steps == 0 else f"{args.cube_steps} steps of {args.batch}"
    print(f"training memory (ShanghaiTech-sized synthetic stores, {store_bytes(big) / 2 ** 30:.1f} GiB for {big} "
          f"cubes): {steps} cubes drawn from the whole store (train_block), then cube_errors on {args.score_cubes} "
          f"cubes spread over it; nf {args.nf}, on {device}; one child process per store")
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    results, peaks, anon = [], {}, {}
    for count in sizes:
        store_dir = root / f"store_{count}"
        started = time.perf_counter()
        write_synthetic_store(store_dir, count)
        written = time.perf_counter() - started
        child = run_child([sys.executable, "-m", "benchmarks.rows.memory", str(store_dir), str(device), str(args.nf),
                           str(args.batch), str(args.cube_steps), str(args.score_cubes)], cwd=REPO, env=env)
        shutil.rmtree(store_dir, ignore_errors=True)
        if child.returncode:
            print(f"  {count} cubes: the child failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        report = json.loads(child.stdout.strip().splitlines()[-1])
        peaks[count] = (report["vm_hwm_kib"] or child.max_rss_kib) / 1024
        anon[count] = report["peak_anon_kib"] / 1024
        gpu = f", peak GPU {report['peak_gpu_bytes'] / 2 ** 20:.0f} MiB" if report["peak_gpu_bytes"] else ""
        print(f"  {count:>8} cubes ({report['trained_on']} trained on, store written in {written:.0f} s): "
              f"peak RSS {peaks[count]:.0f} MiB (wait4 ru_maxrss {child.max_rss_kib / 1024:.0f}; "
              f"peak anonymous {report['peak_anon_kib'] / 1024:.0f} MiB, "
              f"peak file-backed {report['peak_file_kib'] / 1024:.0f} MiB, "
              f"{report['rss_file_kib_at_end'] / 1024:.0f} MiB at the end){gpu}, "
              f"{report['seconds']:.0f} s")
        results.append(Result("memory", "peak RSS MiB", f"{count} cubes", [peaks[count]]))
        if anon[count]:
            results.append(Result("memory", "peak anon MiB", f"{count} cubes", [anon[count]]))
    if len(peaks) == 2:
        print(f"  {big} / {sizes[0]} cubes ({big / sizes[0]:.0f}x the cubes): peak RSS ratio "
              f"{peaks[big] / peaks[sizes[0]]:.2f}" + (f", peak anonymous memory ratio {anon[big] / anon[sizes[0]]:.2f}"
                                                        if anon[sizes[0]] else ""))
        print("  (peak RSS also counts the pages of the store the memory map has touched: page cache, shared and "
              "reclaimable, growing with the cubes read; each store is dropped from the page cache before its run, "
              "since a cached page is mapped with its whole page-cache folio; anonymous memory is what the process "
              "itself allocates)")
    return results


ROWS = {"memory": row_memory}

if __name__ == "__main__":  # the child of row_memory: STORE DEVICE NF BATCH STEPS SCORE_CUBES → one JSON line
    print(json.dumps(train_and_score(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))))
