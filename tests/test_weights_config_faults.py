"""Weights files that are not what their name says, and `--set` against the config file.

Real files built in tmp_path (an HTML page saved under a checkpoint's name, random RAFT weights
under the official file name), real config files, and the scripts' main(argv) in this process:
each failure is one line with exit status 2, no traceback, and the files on disk as they were.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_main, write_config
from utils.config import load_config
from utils.datasets import generate_synthetic
from utils.infra.errors import VECError
from utils.infra.io import load_torch_file, not_a_torch_file
from utils.weights import WEIGHTS, check_before_use

# What Google Drive answers instead of a file when its download quota is exceeded (shortened).
DRIVE_QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
                    b"<body><p>Too many users have viewed or downloaded this file recently.</p></body></html>\n")
# A file whose SHA-256 starts with the official RAFT file's prefix ff5fadd5 (tests/test_weights.py
# found the counter and checks the claim); it stands in for the official file in the checksum tests.
RAFT_STAND_IN = b"VEC test stand-in raft weights 0000b99dccdc"
RAFT = WEIGHTS["raft"]


def one_error_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def script_failed_with(done, tail: str) -> str:
    """Exit status 2, no traceback, and a last stderr line `error: …` containing `tail`; returns that line."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and tail in last, last
    return last


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def random_raft_file(path: Path) -> Path:
    """Loadable RAFT-large weights, but random ones: what the wrong file under the official name holds."""
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    return path


# ----------------------------------------------------------------------------- not a torch file at all

def test_html_page_under_the_flownet2_name_says_so_and_how_to_fetch_it(tmp_path):
    from utils.flow.flownet2 import load_flownet2

    page = tmp_path / WEIGHTS["flownet2"].filename
    page.write_bytes(DRIVE_QUOTA_PAGE)
    with pytest.raises(VECError) as err:
        load_flownet2(page)
    line = one_error_line(err)
    assert line == (f"{page} is an HTML page (what a refused download saves), not the flownet2 weights; "
                    f"delete it and run `python -m utils.weights fetch flownet2 --dest {tmp_path}`")
    assert "Unsupported operand" not in line
    assert page.read_bytes() == DRIVE_QUOTA_PAGE and files_in(tmp_path) == [page.name]  # nothing else written


@pytest.mark.parametrize("content, what", [
    (b"", "is empty (0 bytes)"),
    (b"404: Not Found\n", "is a text file (it starts with '404: Not Found')"),
    (b"\x1f\x8b\x08\x00" + bytes(range(200)), "is a file of another kind (it starts with the bytes 1f 8b 08 00 00 01 02 03)"),
    (b"   \n<html><body>Sign in</body></html>", "is an HTML page (what a refused download saves)"),
])
def test_non_torch_file_of_a_users_own_name_is_named_and_downloaded_again(tmp_path, content, what):
    from utils.flow.raft import RaftFlow

    path = tmp_path / "my_raft.pth"
    path.write_bytes(content)
    with pytest.raises(VECError) as err:
        RaftFlow.from_checkpoint(path)
    assert one_error_line(err) == f"{path} {what}, not the raft weights; download it again"
    assert files_in(tmp_path) == ["my_raft.pth"]


def test_html_page_as_cascade_rcnn_checkpoint_is_one_line(tmp_path):
    from utils.foreground.detectors import load_cascade_rcnn

    page = tmp_path / WEIGHTS["cascade_rcnn"].filename
    page.write_bytes(DRIVE_QUOTA_PAGE)
    with pytest.raises(VECError, match=r"is an HTML page .*; delete it and run `python -m utils.weights fetch "
                                       r"cascade_rcnn --dest "):
        load_cascade_rcnn(page)


def test_html_page_as_flownet2_checkpoint_stops_calc_img_inputs_before_any_flow(tiny_synthetic, tmp_path, capfd):
    page = tmp_path / "FlowNet2_checkpoint.pth.tar"
    page.write_bytes(DRIVE_QUOTA_PAGE)
    config = write_config(tmp_path, raw_dataset_dir=tiny_synthetic.parent)
    done = run_main(capfd, "calc_img_inputs.py", "--config", config, "--set", "synthetic.flow_method=flownet2",
                    "--set", f"synthetic.flownet2_checkpoint={page}")
    script_failed_with(done, f"{page} is an HTML page (what a refused download saves), not the flownet2 weights")
    assert files_in(tmp_path) == ["FlowNet2_checkpoint.pth.tar", "config.cfg"]  # no flow folder


def test_any_torch_file_loader_names_a_page_instead_of_unpickling_it(tmp_path):
    model_file = tmp_path / "synthetic_model.npy"
    model_file.write_bytes(DRIVE_QUOTA_PAGE)
    with pytest.raises(VECError) as err:
        load_torch_file(model_file)
    assert one_error_line(err) == (f"{model_file} is an HTML page, not a torch file; "
                                   "delete it and rerun the step that makes it")


def test_real_torch_files_of_every_format_pass_the_sniff(tmp_path):
    state = {"weight": torch.arange(6.0)}
    torch.save(state, tmp_path / "zip.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # a pickle, as FlowNet2's file
    for name in ("zip.pth", "legacy.pth"):
        assert not_a_torch_file(tmp_path / name) is None, name
        assert torch.equal(load_torch_file(tmp_path / name)["weight"], state["weight"])


# ----------------------------------------------------------------------------- the official name, the wrong file

def test_random_raft_weights_under_the_official_name_are_refused_by_checksum(tmp_path):
    from utils.flow.raft import RaftFlow

    path = random_raft_file(tmp_path / RAFT.filename)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(VECError) as err:
        RaftFlow.from_checkpoint(path)
    assert one_error_line(err) == (
        f"{path} is not the official raft weights: its SHA-256 starts with {actual[:8]}, expected ff5fadd5; "
        f"delete it and run `python -m utils.weights fetch raft --dest {tmp_path}`")
    assert files_in(tmp_path) == [RAFT.filename]  # the file kept for the user to look at; no stamp of a failure


def test_random_raft_weights_stop_calc_img_inputs_in_one_line(tiny_synthetic, tmp_path, capfd):
    folder = tmp_path / "raft_checkpoints"
    folder.mkdir()
    path = random_raft_file(folder / RAFT.filename)
    config = write_config(tmp_path, raw_dataset_dir=tiny_synthetic.parent)
    done = run_main(capfd, "calc_img_inputs.py", "--config", config, "--set", "synthetic.flow_method=raft")
    # config.cfg's raft_weights default is relative to the config file's folder: tmp_path/raft_checkpoints/
    script_failed_with(done, f"{path} is not the official raft weights: its SHA-256 starts with ")
    assert "expected ff5fadd5; delete it and run `python -m utils.weights fetch raft --dest" in done.stderr
    assert files_in(tmp_path) == ["config.cfg", "raft_checkpoints"] and files_in(folder) == [RAFT.filename]


def test_a_users_own_raft_file_is_not_checksummed(tmp_path):
    from utils.flow.raft import RaftFlow

    path = random_raft_file(tmp_path / "raft_finetuned.pth")
    assert isinstance(RaftFlow.from_checkpoint(path), RaftFlow)
    assert files_in(tmp_path) == ["raft_finetuned.pth"]  # nothing remembered about it


def test_official_file_is_hashed_once_and_remembered_by_size_and_time(tmp_path):
    path = tmp_path / RAFT.filename
    path.write_bytes(RAFT_STAND_IN)
    stamp = tmp_path / f".{RAFT.filename}.verified"
    check_before_use("raft", path)
    recorded = json.loads(stamp.read_text())
    assert recorded["sha256"].startswith("ff5fadd5") and recorded["size"] == len(RAFT_STAND_IN)
    assert recorded["mtime_ns"] == path.stat().st_mtime_ns
    assert files_in(tmp_path) == sorted([RAFT.filename, stamp.name])  # no temporary left

    # Other bytes (a zip's first bytes: torch-like) of the same size and time: the stamp is trusted,
    # so the file is not read again.
    when = path.stat().st_mtime_ns
    path.write_bytes(RAFT_STAND_IN.replace(b"VEC", b"PK\x03"))
    os.utime(path, ns=(when, when))
    check_before_use("raft", path)
    # Touched: hashed again, and the change is found.
    os.utime(path, ns=(when + 10**9, when + 10**9))
    with pytest.raises(VECError, match=r"its SHA-256 starts with [0-9a-f]{8}, expected ff5fadd5"):
        check_before_use("raft", path)
    assert json.loads(stamp.read_text()) == recorded  # a failure does not replace the record of the good file


def test_a_damaged_stamp_means_hashing_again(tmp_path):
    path = tmp_path / RAFT.filename
    path.write_bytes(RAFT_STAND_IN)
    stamp = tmp_path / f".{RAFT.filename}.verified"
    stamp.write_text("{not json")
    check_before_use("raft", path)
    assert json.loads(stamp.read_text())["sha256"].startswith("ff5fadd5")


# ----------------------------------------------------------------------------- --set against the file

def test_set_of_a_selfcomplete_key_wins_over_the_dataset_section_of_the_file(tmp_path):
    config = write_config(tmp_path)
    assert "\nepochs = 8\n" in config.read_text().split("[synthetic]")[1].split("[SelfComplete]")[0]
    assert load_config(config).cloze.epochs == 8  # the file alone: [synthetic] over [SelfComplete]
    assert load_config(config, ["SelfComplete.epochs=2"]).cloze.epochs == 2
    # The dataset's own --set wins over everything, in either order on the command line.
    assert load_config(config, ["SelfComplete.epochs=2", "synthetic.epochs=3"]).cloze.epochs == 3
    assert load_config(config, ["synthetic.epochs=3", "SelfComplete.epochs=2"]).cloze.epochs == 3
    # A key the command line leaves alone keeps the file's rule.
    assert load_config(config, ["SelfComplete.epochs=2"]).cloze.nf == 8
    # The README's example on the repository's own config.cfg.
    assert load_config(REPO / "config.cfg", ["SelfComplete.epochs=2"]).cloze.epochs == 2
    # An error still names where the value was written.
    with pytest.raises(VECError, match=r"--set SelfComplete.epochs = '0' is out of range"):
        load_config(config, ["SelfComplete.epochs=0"])


def test_readme_example_trains_the_epochs_it_asks_for(tmp_path, capfd):
    generate_synthetic(tmp_path / "raw_datasets" / "synthetic", seed=4, n_train=1, n_test=1, n_frames=12,
                       progress=False)
    config = write_config(tmp_path, nf=2)  # [synthetic] keeps epochs = 8
    assert run_main(capfd, "calc_img_inputs.py", "--config", config, "--split", "train").returncode == 0
    done = run_main(capfd, "train.py", "--config", config, "--set", "SelfComplete.epochs=1")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    # The progress bar's last postfix names the last epoch trained.
    assert re.findall(r"epoch=(\d+)", done.stderr)[-1] == "1" and "epoch=2" not in done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("trained on ")
    manifest = tmp_path / "data" / "raw2flow" / "synthetic_model_obj_det_with_motion_SelfComplete.json"
    assert json.loads(manifest.read_text())["settings"]["nf"] == 2
