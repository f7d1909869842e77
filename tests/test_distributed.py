"""utils/infra/distributed.py and the scripts under torchrun: in one process (world size 1) and with
real 2-process torchrun runs on the CPU (gloo), real files, compared with a single-process run."""
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.stacked_cloze import Grouped
from tests.conftest import REPO, SCRIPTS, SMALL_RUN, run_main, write_config
from utils.infra import distributed
from utils.config import ClozeConfig
from utils.fingerprints import CubeSpec
from utils.cubes import CubeStore, build_cubes, merge_cube_stores, store_capacity
from utils.datasets import open_split
from utils.infra.errors import VECError
from utils.flow import OpenCVFlow, compute_split_flow, flow_file_path
from utils.foreground import compute_split_boxes, split_boxes
from utils.foreground.box_files import box_file_path, save_box_file
from utils.cloze_steps import cube_batches
from utils.training import train_blocks

WORKER = REPO / "tests" / "distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args, nproc=2, timeout=600, **env):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=_env(**env))


# ---- one process: everything is a no-op --------------------------------------------------------

@pytest.mark.parametrize("n", range(0, 13))
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shares_are_consecutive_cover_everything_and_differ_by_one_at_most(n, world):
    bounds = [distributed.share_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_weighted_shares_balance_the_weights():
    lengths = [100, 10, 10, 80, 100]  # frames per video
    assert [distributed.share_bounds(5, r, 2, lengths) for r in range(2)] == [(0, 3), (3, 5)]
    assert [distributed.share_bounds(5, r, 3, lengths) for r in range(3)] == [(0, 1), (1, 4), (4, 5)]
    bounds = [distributed.share_bounds(2, r, 4, [5, 5]) for r in range(4)]  # more ranks than videos
    assert bounds[0][0] == 0 and bounds[-1][1] == 2 and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError):
        distributed.share_bounds(3, 2, 2)


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group("cpu"), distributed.quiet_unless_main():
        assert not torch.distributed.is_initialized()
        assert (distributed.active(), distributed.rank(), distributed.world_size(), distributed.is_main()) == \
            (False, 0, 1, True)
        items = np.arange(7)
        assert distributed.shard(items) is not None and np.array_equal(distributed.shard(items), items)
        assert distributed.shard([1, 2, 3], weights=[1, 1, 5]) == [1, 2, 3]
        assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
        payload = object()
        assert distributed.broadcast_object(payload) is payload
        distributed.barrier()
        t = torch.ones(3)
        assert distributed.sum_over_ranks(t) is t
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        assert distributed.data_parallel(model, "cpu") is model and type(model[1]) is nn.BatchNorm2d
    assert distributed.error_prefix() == ""


def test_bad_device_and_timeout_under_torchrun_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(VECError, match="device = cuda:1 names one GPU but torchrun started 2 processes"):
        with distributed.process_group("cuda:1"):
            pass
    for minutes in ("soon", "0", "-5", "nan", "inf", "1e300"):
        monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, minutes)
        with pytest.raises(VECError, match=f"VEC_DIST_TIMEOUT_MINUTES = '{minutes}' must be a finite positive number"):
            with distributed.process_group("cpu"):
                pass
    assert distributed.error_prefix() == "[rank 1 of 2] "
    assert not torch.distributed.is_initialized()


def _tiny_store(directory: Path, n: int, seed: int = 0) -> CubeStore:
    """A cube store on disk with n random cubes (5 frames, 5 flows, 32x32)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    np.save(directory / "raw.npy", rng.integers(0, 256, (n, 5, 3, 32, 32), dtype=np.uint8))
    np.save(directory / "flow.npy", rng.normal(0, 1, (n, 5, 2, 32, 32)).astype(np.float32))
    np.savez(directory / "index.npz", frame_index=np.arange(n, dtype=np.int64), boxes=np.zeros((n, 4)),
             blocks=np.zeros((n, 2), dtype=np.int64))
    (directory / "meta.json").write_text(json.dumps({"count": n, "n_frames": n, "frame_size": [32, 32],
                                                     "settings": {}}))
    return CubeStore.open(directory)


def test_each_global_batch_is_split_between_the_ranks(tmp_path):
    """Per step, the ranks' cubes together are exactly the single-process batch (same seeded permutation)."""
    store = _tiny_store(tmp_path / "store", 10)
    indices = np.arange(10)

    def batches(rank, world):
        generator = torch.Generator().manual_seed(4)
        return [raw for raw, _ in cube_batches(store, indices, 4, "cpu", generator, rank, world)]

    single = batches(0, 1)
    for world in (2, 3):
        shares = [batches(r, world) for r in range(world)]
        assert all(len(s) == len(single) == 3 for s in shares)
        for step, whole in enumerate(single):
            assert torch.equal(torch.cat([s[step] for s in shares]), whole)
    assert [len(b) for b in batches(0, 3)] == [2, 2, 1]
    assert [len(b) for b in batches(2, 3)] == [1, 1, 0]  # the last batch has 2 cubes: rank 2 gets none


def test_parts_by_video_give_what_one_process_gives(small_synthetic, tmp_path):
    """What each rank does with its frames, done here rank after rank: the same boxes, flow and cubes."""
    cfg = small_synthetic
    split = open_split(cfg.dataset_dir, "UCSDped2", "train")
    whole_boxes = compute_split_boxes(split, "obj_det_with_motion", cfg.dataset.boxes, None, progress=False)
    world = 4  # 3 videos: one rank has none
    shares = []
    for rank in range(world):
        first, stop = distributed.share_bounds(len(split.video_names), rank, world, split.video_lengths)
        shares.append(np.flatnonzero((split.frame_video_idx > first) & (split.frame_video_idx <= stop)))
    assert np.array_equal(np.concatenate(shares), np.arange(len(split))) and min(map(len, shares)) == 0

    parts = [compute_split_boxes(split, "obj_det_with_motion", cfg.dataset.boxes, None, progress=False, frames=f)
             for f in shares]
    path = tmp_path / "bboxes.npy"
    split_path = box_file_path(split.dataset_dir, "train", "obj_det_with_motion")
    boxes = split_boxes(split, "obj_det_with_motion", cfg.dataset.boxes, reuse_saved=False,
                        detector_factory=lambda: None, progress=False, frames=shares[1],
                        gather=lambda mine: [pickle.loads(pickle.dumps(part)) for part in parts],  # as sent
                        save=False)
    assert not split_path.exists()
    save_box_file(path, boxes)
    save_box_file(tmp_path / "whole.npy", whole_boxes)
    assert path.read_bytes() == (tmp_path / "whole.npy").read_bytes()

    flow_root = tmp_path / "flow"
    written = [compute_split_flow(split, OpenCVFlow("dis"), flow_root, progress=False, frames=f) for f in shares]
    assert written == [len(f) for f in shares]
    for i in (0, 23, 24, len(split) - 1):
        assert flow_file_path(flow_root, split, i).read_bytes() == flow_file_path(cfg.flow_dir, split, i).read_bytes()

    spec = CubeSpec(patch_size=32, context_frame_num=4, context_of_num=4, border_mode="predict", motion_thr=0,
                    h_block=2, w_block=2, block_mode=5, flow_method="dis")
    options = dict(settings={"made": "here"}, progress=False)
    whole = build_cubes(split, whole_boxes, cfg.flow_dir, tmp_path / "whole", spec, **options)
    part_dirs = [tmp_path / f"cubes.rank{r}" for r in range(world)]
    for directory, frames in zip(part_dirs, shares):
        build_cubes(split, whole_boxes, cfg.flow_dir, directory, spec, frames=frames, **options)
    merged = merge_cube_stores(part_dirs, tmp_path / "cubes", store_capacity(whole_boxes, 5))
    assert not any(d.exists() for d in part_dirs)
    for name in ("raw.npy", "flow.npy", "meta.json"):
        assert (tmp_path / "cubes" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    for field in ("frame_index", "boxes", "blocks"):
        assert np.array_equal(getattr(merged, field), getattr(whole, field))
        assert getattr(merged, field).dtype == getattr(whole, field).dtype


# ---- two processes -----------------------------------------------------------------------

@contextmanager
def one_thread():
    """The single-process side of a comparison at one thread, as each torchrun rank runs (OMP_NUM_THREADS=1):
    the grouped execution of these tiny networks is op-launch bound, and two OpenMP threads' barriers made it
    ten times slower here. The numbers compared do not depend on it (tolerances of summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# What each worker mode (tests/distributed_worker.py) is given: the train mode 9 cubes in batches of 4 over
# 2 ranks (shares 2+2, 2+2, then 1+0), 2 epochs; the gradients mode 9 cubes in one global batch (shares 5 + 4).
WORKER_INPUTS = {"train": (0, ClozeConfig(nf=2, epochs=2, batch_size=4)),
                 "gradients": (4, ClozeConfig(nf=4, epochs=1, batch_size=9))}


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory):
    """One 2-process torchrun of tests/distributed_worker.py running its modes one after the other (a start
    of three Pythons with torch is most of the time of each): each mode's inputs and outputs in out/<mode>/."""
    out = tmp_path_factory.mktemp("worker")
    modes = ("collectives", "batchnorm", "train", "gradients")
    for mode in modes:
        (out / mode).mkdir()
    for mode, (seed, cloze) in WORKER_INPUTS.items():
        _tiny_store(out / mode / "store", 9, seed=seed)
        (out / mode / "cloze.json").write_text(json.dumps(asdict(cloze)))
    done = _torchrun(WORKER, out, *modes)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_ranks_shard_gather_and_synchronise_batch_norm(worker_run):
    seen = [json.loads((worker_run / "collectives" / f"collectives_rank{r}.json").read_text()) for r in range(2)]
    assert [(s["rank"], s["world"], s["main"]) for s in seen] == [(0, 2, True), (1, 2, False)]
    assert seen[0]["mine"] == list(range(6)) and seen[1]["mine"] == list(range(6, 11))
    for s in seen:
        assert s["gathered"] == list(range(11)) and s["broadcast"] == "from 0" and s["sum"] == 3.0
        assert s["arrays"] == [[0], [0, 1]]
    for r in range(2):
        result = json.loads((worker_run / "batchnorm" / f"batchnorm_rank{r}.json").read_text())
        assert result.pop("type") == "CPUSyncBatchNorm"
        assert all(value < 2e-5 for value in result.values()), result


@pytest.mark.slow
def test_ddp_training_matches_one_process(worker_run):
    """9 cubes, batches of 4 over 2 ranks (shares 2+2, 2+2, then 1+0), 2 epochs: the same network."""
    store = CubeStore.open(worker_run / "train" / "store")
    cloze = WORKER_INPUTS["train"][1]
    parallel = torch.load(worker_run / "train" / "train_rank0.pt")
    # Like for like: torchrun trains the stacked network's grouped execution (synchronised BatchNorm).
    with one_thread():
        single = train_blocks(store, cloze, 1, 1, "cpu", seed=3, progress=False, execution=Grouped())
    assert parallel["state"].keys() == single.states[0][0].keys()
    # Exactness of DDP's gradients is tested in float64 (above). In float32 training, a max-pool or
    # ReLU that flips on a rounding difference reroutes a gradient, and Adam's first steps move each
    # weight by about lr in the direction of its gradient's sign whatever its size: ~6 % of this tiny
    # network's weights end up more than float rounding apart (as between any two summation orders,
    # grouped against sequential in one process too) -- but never beyond Adam's bound, and the
    # function the weights compute agrees: training scores within 1e-3 (measured 6.5e-4).
    steps = cloze.epochs * 3
    for key, value in single.states[0][0].items():
        if not value.is_floating_point():
            assert torch.equal(parallel["state"][key], value), key
        else:
            assert (parallel["state"][key] - value).abs().max() <= 2.5 * cloze.learning_rate * steps, key
    np.testing.assert_allclose(parallel["raw"].numpy(), single.raw_scores[0][0], rtol=1e-3)
    np.testing.assert_allclose(parallel["of"].numpy(), single.of_scores[0][0], rtol=1e-3)


@pytest.mark.slow  # a torchrun
def test_ddp_gradients_of_the_stacked_network_are_the_single_process_ones(worker_run):
    """One backward, 9 cubes in one global batch (shares 5 + 4): DDP's averaged gradients, with
    synchronised BatchNorm, are the gradients of the single-process batch.

    In float64: in float32 a max-pool or ReLU that flips on a rounding difference reroutes a
    gradient outright, so two summation orders (even two single-process executions) differ by
    percents in a few tensors of a network this small.
    """
    from utils.cloze_steps import TrainStep
    from utils.trained_model import make_network

    store = CubeStore.open(worker_run / "gradients" / "store")
    cloze = WORKER_INPUTS["gradients"][1]
    parallel = torch.load(worker_run / "gradients" / "gradients_rank0.pt")
    torch.manual_seed(3)
    model = make_network(cloze, execution=Grouped()).double().train()
    step = TrainStep(model, learning_rate=cloze.learning_rate, lambda_raw=1.0, lambda_of=1.0, use_flow=True,
                     batch_size=9, device=torch.device("cpu"))
    raw, flow = next(cube_batches(store, np.arange(9), 9, "cpu"))
    with one_thread():
        step.loss(raw.double(), flow.double(), 9).backward()
    single = model.map_to_reference({k: p.grad for k, p in model.named_parameters()})
    assert parallel.keys() == single.keys()
    for key, want in single.items():
        got = parallel[key]
        assert got.dtype == torch.float64, key
        if re.search(r"\.conv\.[03]\.bias$", key):  # exact gradient zero (BatchNorm follows): both rounding noise
            scale = single[key[:-len("bias")] + "weight"].abs().max()
            assert got.abs().max() <= 1e-9 * scale and want.abs().max() <= 1e-9 * scale, key
        else:
            assert (got - want).abs().max() <= 1e-9 * want.abs().max(), key


@pytest.mark.slow
def test_a_rank_that_never_comes_stops_the_others_with_one_line(tmp_path):
    started = time.time()
    (tmp_path / "timeout").mkdir()
    done = _torchrun(WORKER, tmp_path, "timeout", VEC_DIST_TIMEOUT_MINUTES="0.05")
    assert done.returncode != 0
    waited = json.loads((tmp_path / "timeout" / "timeout_rank0.json").read_text())["waited"]
    assert 2 < waited < 30 and time.time() - started < 120
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in errors if "[rank 0 of 2] lost the other processes while waiting at a barrier"
                      in line] and len(errors) == 1


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))}


@pytest.mark.slow
def test_torchrun_scripts_match_one_process(scored_run, tmp_path):
    """The three scripts under a 2-process torchrun against the session's single-process run of them
    (tests/conftest.py: scored_run, made in this process) on the same frames with the same settings."""
    single, parallel = scored_run.root, tmp_path / "parallel"
    shutil.copytree(single / "raw_datasets", parallel / "raw_datasets",
                    ignore=shutil.ignore_patterns("bboxes_*"))  # the frames only: the boxes are the scripts' work
    config = write_config(parallel, **SMALL_RUN)
    for script in SCRIPTS:
        done = _torchrun(REPO / script, "--config", config)
        assert done.returncode == 0, f"parallel {script}: {done.stderr[-3000:]}"
        (parallel / f"{script}.stdout").write_text(done.stdout)

    # Flow and box files: the same bytes.
    for pattern, folder in (("*.npy", "optical_flow"), ("bboxes_*", "raw_datasets")):
        ones, twos = _files(single / folder, pattern), _files(parallel / folder, pattern)
        assert ones.keys() == twos.keys() and len(ones) >= 4
        assert [k for k in ones if ones[k] != twos[k]] == []
    # Cube stores: the same rows, index and meta (joined from the ranks' parts, which are gone).
    work = Path("data") / "raw2flow"
    for split in ("train", "test"):
        name = work / f"synthetic_cubes_{split}_obj_det_with_motion"
        for file in ("raw.npy", "flow.npy", "meta.json"):
            assert (single / name / file).read_bytes() == (parallel / name / file).read_bytes(), (split, file)
        a, b = np.load(single / name / "index.npz"), np.load(parallel / name / "index.npz")
        assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a.files)
    assert sorted(p.name for p in (parallel / work).iterdir()) == sorted(p.name for p in (single / work).iterdir())
    assert not list(parallel.rglob("*.tmp")) and not list(parallel.rglob("*.partial"))

    # The model is written once (by rank 0), and only rank 0 printed.
    out = (parallel / "train.py.stdout").read_text()
    assert out.count("trained on ") == 1 and out.count("training on ") == 1
    assert (parallel / "test.py.stdout").read_text().count("frame-level AUROC (micro)") == 1
    manifest = json.loads((parallel / work / "synthetic_model_obj_det_with_motion_SelfComplete.json").read_text())
    assert len(manifest["files"]) == 3

    # Results: within 0.01 of the single-process AUROC.
    ones, twos = (json.loads((root / "results" / "synthetic" / "metrics.json").read_text())
                  for root in (single, parallel))
    assert ones["n_frames"] == twos["n_frames"] == 24 and ones["n_cubes"] == twos["n_cubes"]
    assert abs(ones["auroc_micro"] - twos["auroc_micro"]) <= 0.01, (ones["auroc_micro"], twos["auroc_micro"])
    assert abs(ones["auroc_macro"] - twos["auroc_macro"]) <= 0.01


@pytest.mark.slow
def test_an_error_on_one_rank_is_one_line_and_stops_the_run(tiny_synthetic, tmp_path, capfd):
    """Rank 1's video has a truncated flow file: rank 1 says so in one line; rank 0 does not hang."""
    shutil.copytree(tiny_synthetic, tmp_path / "raw_datasets" / "synthetic")  # 2 train videos of 12 frames
    config = write_config(tmp_path, **SMALL_RUN)
    # The flow in this process: torchrun's is the same, file for file (test_torchrun_scripts_match_one_process).
    done = run_main(capfd, "calc_img_inputs.py", "--config", config, "--split", "train")
    assert done.returncode == 0, done.stderr[-3000:]
    broken = sorted((tmp_path / "optical_flow" / "synthetic" / "Train").rglob("*.npy"))[-3]  # second video
    broken.write_bytes(broken.read_bytes()[:100])
    started = time.time()
    done = _torchrun(REPO / "train.py", "--config", config, timeout=300)
    assert done.returncode != 0 and time.time() - started < 240
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # Whichever rank reports first, torchrun then stops the other, which may not get to print: at least one
    # line, and each line is rank 1's naming the file or rank 0's naming the lost processes.
    assert errors and all(str(broken) in line for line in errors if line.startswith("error: [rank 1 of 2]"))
    # Rank 0, waiting for rank 1 in whichever collective it has reached (a gather, a barrier, rank 0's
    # broadcast: that depends on timing), says why it stops, unless torchrun stopped it first.
    assert all(line.startswith("error: [rank 1 of 2] optical flow file") or
               line.startswith("error: [rank 0 of 2] lost the other processes while ") for line in errors), errors
    assert "[rank1]: Traceback" not in done.stderr and "[rank0]: Traceback" not in done.stderr
    assert not (tmp_path / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.npy").exists()
