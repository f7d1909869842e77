"""One run at a time per work folder (utils/infra/run_lock.py), hidden work-in-progress folders
(utils.infra.io.atomic_dir), and write errors that name a reason only when errno gives one.

Another run is a real process where only a process shows it: a lock held by another
process, a killed process's leftovers, ranks under torchrun.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_config
from utils.config import load_config
from utils.infra.errors import VECError
from utils.infra.io import atomic_dir, remove_stale_work
from utils.own_video.source import _write_frame
from utils.infra.run_lock import exclusive, lock_file, run_lock

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from utils.infra.run_lock import run_lock
    with run_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(300)
""")


def _hold(lock):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(REPO)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_lock_is_reentrant_and_leaves_nothing(tmp_path):
    lock = tmp_path / "data" / "videos" / "clip" / ".clip.lock"
    with run_lock(lock):
        record = json.loads(lock.read_text())
        assert record["pid"] == os.getpid() and record["since"]
        with run_lock(lock):  # a stage inside a stage of the same run
            assert lock.is_file()
        assert lock.is_file()  # still held by the outer one
    assert list(tmp_path.iterdir()) == []  # lock file and the folders it made are gone


def test_exclusive_locks_the_configs_work_folder(tmp_path):
    cfg = load_config(write_config(tmp_path))

    @exclusive
    def step(cfg, x):
        return x, sorted(p.name for p in cfg.data_root_dir.iterdir())

    assert step(cfg, 3) == (3, [".synthetic.lock"])
    assert lock_file(cfg.data_root_dir, cfg.dataset_name) == tmp_path / "data" / ".synthetic.lock"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.cfg"]


@pytest.mark.slow
def test_another_process_holding_the_lock_is_named_and_its_death_frees_it(tmp_path):
    lock = tmp_path / "data" / ".synthetic.lock"
    holder = _hold(lock)
    try:
        with pytest.raises(VECError) as caught:
            with run_lock(lock):
                pass
        message = str(caught.value)
        assert message.startswith(f"{lock.parent} is in use by another run (pid {holder.pid}, since ")
        assert "wait for it to finish" in message and "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert lock.is_file()  # left by the killed process; the kernel released its flock
    with run_lock(lock):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


RANKS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from utils.infra import distributed
    from utils.infra.errors import VECError
    from utils.infra.run_lock import run_lock
    lock, out = Path(sys.argv[1]), Path(sys.argv[2])
    with distributed.process_group("cpu"):
        result = {"rank": distributed.rank()}
        try:
            with run_lock(lock):
                with run_lock(lock):  # nested: no second flock and no collective
                    distributed.barrier()
                    result["held"] = lock.is_file()
                distributed.barrier()
        except VECError as err:
            result["error"] = str(err)
        distributed.barrier()
        (out / f"rank{result['rank']}.json").write_text(json.dumps(result))
""")


@pytest.mark.slow
def test_ranks_of_one_torchrun_share_one_lock_and_stop_together(tmp_path):
    """Two ranks: rank 0 takes the lock for both (no deadlock); when another run holds it, both
    ranks stop with the same line instead of one waiting for the other forever."""
    from tests.test_distributed import _torchrun

    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    lock = tmp_path / "work" / ".synthetic.lock"
    done = _torchrun(script, lock, tmp_path, REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [
        {"rank": 0, "held": True}, {"rank": 1, "held": True}]
    assert not (tmp_path / "work").exists()

    holder = _hold(lock)
    try:
        done = _torchrun(script, lock, tmp_path, REPO, timeout=300)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [json.loads((tmp_path / f"rank{r}.json").read_text())["error"] for r in (0, 1)]
    assert errors[0] == errors[1] and f"in use by another run (pid {holder.pid}, since " in errors[0]


def test_a_folder_being_built_is_hidden_and_another_builder_is_left_alone(tmp_path):
    target = tmp_path / "results" / "clip"
    with atomic_dir(target) as mine:
        (mine / "frame_scores.csv").write_text("frame\n")
        with atomic_dir(target) as other:  # a second builder of the same folder
            assert other != mine and mine.is_dir()
            (other / "frame_scores.csv").write_text("frame\nother\n")
        assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] == ["clip"]
        assert all(p.name.startswith(".clip.") and p.name.endswith(".partial")
                   for p in target.parent.iterdir() if p.name != "clip")
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip"]
    assert (target / "frame_scores.csv").read_text() == "frame\n"  # the last one completed wins


def test_a_failed_build_leaves_no_folder_and_no_parents(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "data" / "videos" / "clip" / "frames") as partial:
            (partial / "00000000.png").write_bytes(b"x")
            raise RuntimeError("decode failed")
    assert list(tmp_path.iterdir()) == []


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from utils.infra.io import atomic_dir
    with atomic_dir(Path(sys.argv[1])) as partial:
        (partial / "frame_scores.csv").write_text("frame\\n")
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.slow
def test_what_a_killed_process_left_is_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "clip"
    done = subprocess.run([sys.executable, "-c", KILLED, str(target), str(REPO)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(".clip.") and left.name.endswith(".partial")
    legacy = tmp_path / "clip.partial"  # what earlier versions left under a visible name
    legacy.mkdir()
    live = tmp_path / left.name.replace(left.name.split(".")[2].split("@")[0], str(os.getppid()))
    live.mkdir()  # a folder of a live process (this test's parent)
    assert remove_stale_work(target) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_write_errors_name_the_disk_only_when_errno_says_so(tmp_path):
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(VECError, match=r"cannot write /dev/full: the disk is full"):
        _write_frame(Path("/dev/full"), frame, "frame 3 of clip.avi")  # ENOSPC, from the kernel
    with pytest.raises(VECError) as caught:
        _write_frame(tmp_path / "gone" / "00000003.png", frame, "frame 3 of clip.avi")  # another run removed it
    message = str(caught.value)
    assert "frame 3 of clip.avi" in message and "No such file or directory" in message and "disk" not in message
