"""utils/weights.py (and the download path it shares with the datasets, utils/infra/download.py) against
a real HTTP server on 127.0.0.1: checksums, resuming, errors, the command line.

No test reaches the internet: every URL opened in-process is asserted to be local, the
command-line runs get the local server as their mirror (the server's request log shows it
was asked), and the one Google Drive download goes to a proxy on 127.0.0.1 that refuses it.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from tests.local_server import LOCAL, closed_port, serve
from tests.local_server import local_only as guard_local
from utils import weights
from utils.infra.errors import VECError
from utils.weights import WEIGHTS, WeightSpec, fetch, fetch_hint, missing_hint, verify

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: several read blocks, odd length
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
# A stand-in for torchvision's RAFT file whose SHA-256 starts with the real file's prefix
# ff5fadd5, so the command line can fetch the real `raft` entry from the local server. The
# 12 hex digits at the end are the first counter (3,114,126,556) that gives it, found once by
# trying counters in order; the test below checks the claim.
RAFT_STAND_IN = b"VEC test stand-in raft weights 0000b99dccdc"


@pytest.fixture
def server():
    """A local HTTP server on a free port (tests/local_server.py), stopped at the end of the test."""
    with serve() as httpd:
        httpd.files["/file.bin"] = PAYLOAD
        yield httpd


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Every URL the module opens in-process must be on 127.0.0.1; proxies are switched off."""
    monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
    return guard_local(monkeypatch)


def spec_for(server, path="/file.bin", **changes) -> WeightSpec:
    base = WeightSpec(name="test", url=server.base + path, filename="model-abc.pth", folder="unused",
                      sha256_prefix=PAYLOAD_SHA[:8])
    return replace(base, **changes)


def run(spec, dest, **kwargs):
    lines = []
    path = fetch(spec, dest, progress=False, timeout=5, say=lines.append, **kwargs)
    return path, "\n".join(lines)


# ----------------------------------------------------------------------------- registry

def test_registry_matches_the_loaders_and_config_defaults():
    from utils.config import DatasetConfig
    from utils.flow.flownet2 import DEFAULT_CHECKPOINT

    assert Path(WEIGHTS["flownet2"].folder) / WEIGHTS["flownet2"].filename == DEFAULT_CHECKPOINT
    defaults = DatasetConfig()
    assert defaults.flownet2_checkpoint == Path("FlowNet2_src/pretrained/FlowNet2_checkpoint.pth.tar")
    assert defaults.detector_checkpoint == Path("obj_det_checkpoints") / WEIGHTS["cascade_rcnn"].filename
    assert defaults.raft_weights == Path("raft_checkpoints") / WEIGHTS["raft"].filename
    assert len({spec.folder for spec in WEIGHTS.values()}) == len(WEIGHTS)  # a folder for each network
    for spec in WEIGHTS.values():
        readme = REPO / spec.folder / "README.md"
        assert readme.is_file() and spec.filename in readme.read_text()
        assert spec.url.startswith("https://") and (REPO / spec.folder).is_dir()
        if spec.sha256_prefix is not None:  # torch.hub's convention: <name>-<first 8 hex of the SHA-256>.<ext>
            assert spec.filename.split("-")[-1].split(".")[0] == spec.sha256_prefix
            assert spec.url.endswith("/" + spec.filename)
    flownet2 = WEIGHTS["flownet2"]
    assert flownet2.sha256_prefix is None and flownet2.size is None and flownet2.min_size == 4 * 162_518_834
    assert fetch_hint("flownet2") == "run `python -m utils.weights fetch flownet2`"
    assert missing_hint("raft") == (f"run `python -m utils.weights fetch raft` (or download {WEIGHTS['raft'].filename} "
                                    f"from {WEIGHTS['raft'].url} into raft_checkpoints/)")
    with pytest.raises(KeyError):
        fetch_hint("nope")


# ----------------------------------------------------------------------------- downloads

def test_right_checksum_file_appears_verified(server, tmp_path, local_only):
    path, said = run(spec_for(server), tmp_path / "w")
    assert path == tmp_path / "w" / "model-abc.pth" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["model-abc.pth"]
    assert f"SHA-256 {PAYLOAD_SHA[:8]}… verified" in said
    assert local_only == [server.base + "/file.bin"] and server.requests == [("/file.bin", None)]


def test_wrong_checksum_is_one_line_and_leaves_nothing(server, tmp_path):
    with pytest.raises(VECError) as err:
        run(spec_for(server, sha256_prefix="deadbeef"), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "checksum mismatch for model-abc.pth" in message
    assert "deadbeef" in message and PAYLOAD_SHA[:8] in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_keeps_partial_and_resumes_with_range(server, tmp_path):
    spec = spec_for(server)
    server.cut_next = True
    with pytest.raises(VECError) as err:
        run(spec, tmp_path)
    half = len(PAYLOAD) // 2
    assert "\n" not in str(err.value) and "interrupted" in str(err.value) and "resume" in str(err.value)
    assert f"{half:,} of {len(PAYLOAD):,} bytes" in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["model-abc.pth.partial"]  # nothing under the final name
    assert (tmp_path / "model-abc.pth.partial").stat().st_size == half

    path, said = run(spec, tmp_path)
    assert server.requests[-1] == ("/file.bin", f"bytes={half}-")
    assert f"resuming model-abc.pth.partial from byte {half:,}" in said
    assert path.read_bytes() == PAYLOAD and [p.name for p in tmp_path.iterdir()] == ["model-abc.pth"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    spec = spec_for(server)
    server.cut_next = True
    with pytest.raises(VECError):
        run(spec, tmp_path)
    server.honour_range = False  # answers the Range request with 200 and the whole file
    path, said = run(spec, tmp_path)
    assert server.requests[-1][1] is not None  # it was asked to resume
    assert "starting model-abc.pth.partial over" in said
    assert path.read_bytes() == PAYLOAD and [p.name for p in tmp_path.iterdir()] == ["model-abc.pth"]


def test_resumed_partial_failing_verification_is_deleted(server, tmp_path):
    half = len(PAYLOAD) // 2
    (tmp_path / "model-abc.pth.partial").write_bytes(b"\0" * half)  # a stale partial from some other file
    with pytest.raises(VECError) as err:
        run(spec_for(server), tmp_path)
    message = str(err.value)
    assert server.requests == [("/file.bin", f"bytes={half}-")]
    assert "\n" not in message and "checksum mismatch for model-abc.pth" in message
    assert "after resuming an earlier partial download" in message and "deleted" in message
    assert list(tmp_path.iterdir()) == []
    path, _ = run(spec_for(server), tmp_path)  # the next run starts from scratch and succeeds
    assert server.requests[-1] == ("/file.bin", None) and path.read_bytes() == PAYLOAD


def test_restart_failing_verification_does_not_blame_the_old_partial(server, tmp_path):
    (tmp_path / "model-abc.pth.partial").write_bytes(b"\0" * 100)
    server.honour_range = False
    with pytest.raises(VECError) as err:
        run(spec_for(server, sha256_prefix="deadbeef"), tmp_path)
    assert "(the download was deleted)" in str(err.value) and "resuming" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_complete_partial_answered_416_is_verified_and_kept(server, tmp_path):
    (tmp_path / "model-abc.pth.partial").write_bytes(PAYLOAD)  # e.g. killed while verifying
    path, _ = run(spec_for(server), tmp_path)
    assert server.requests == [("/file.bin", f"bytes={len(PAYLOAD)}-")]
    assert path.read_bytes() == PAYLOAD and [p.name for p in tmp_path.iterdir()] == ["model-abc.pth"]


def test_dead_link_is_one_line_with_manual_steps(server, tmp_path):
    spec = spec_for(server, path="/gone.pth")
    with pytest.raises(VECError) as err:
        run(spec, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "HTTP 404" in message
    assert f"download {server.base}/gone.pth by hand and save it as {tmp_path / 'model-abc.pth'}" in message
    assert list(tmp_path.iterdir()) == []


def test_manual_steps_name_the_official_page_when_a_mirror_fails(server, tmp_path):
    spec = spec_for(server, page="https://example.org/official-page")
    with pytest.raises(VECError) as err:
        run(spec, tmp_path, url=server.base + "/gone.pth")
    assert "HTTP 404" in str(err.value) and "download https://example.org/official-page by hand" in str(err.value)


def test_offline_connection_refused_is_one_line(tmp_path):
    port = closed_port()
    spec = WeightSpec(name="test", url=f"{LOCAL}{port}/file.bin", filename="model-abc.pth", folder="unused",
                      sha256_prefix="00000000")
    with pytest.raises(VECError) as err:
        run(spec, tmp_path)
    message = str(err.value)
    assert "\n" not in message and f"cannot reach 127.0.0.1:{port}" in message and "offline?" in message
    assert f"save it as {tmp_path / 'model-abc.pth'}" in message
    assert list(tmp_path.iterdir()) == []


def test_server_that_never_answers_times_out_as_one_line(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        spec = WeightSpec(name="test", url=f"{LOCAL}{listener.getsockname()[1]}/file.bin",
                          filename="model-abc.pth", folder="unused")
        with pytest.raises(VECError) as err:
            fetch(spec, tmp_path, progress=False, timeout=0.5, say=lambda line: None)
    assert "\n" not in str(err.value) and "offline?" in str(err.value) and "by hand" in str(err.value)


def test_unwritable_destination_is_named_not_blamed_on_the_network(server, tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(VECError) as err:
        run(spec_for(server), tmp_path / "a-file" / "weights")
    message = str(err.value)
    assert "\n" not in message and f"cannot create the folder {tmp_path / 'a-file' / 'weights'}" in message
    assert server.requests == []


def test_already_present_and_verified_makes_no_request(server, tmp_path, local_only):
    (tmp_path / "model-abc.pth").write_bytes(PAYLOAD)
    path, said = run(spec_for(server), tmp_path)
    assert path == tmp_path / "model-abc.pth" and "already present and verified, skipped" in said
    assert server.requests == [] and local_only == []


def test_present_but_corrupt_file_is_not_overwritten(server, tmp_path):
    (tmp_path / "model-abc.pth").write_bytes(b"mine")
    with pytest.raises(VECError) as err:
        run(spec_for(server), tmp_path)
    assert "\n" not in str(err.value) and "fails verification" in str(err.value) and "delete it" in str(err.value)
    assert (tmp_path / "model-abc.pth").read_bytes() == b"mine" and server.requests == []


def test_size_only_verification_says_no_checksum(server, tmp_path):
    path, said = run(spec_for(server, sha256_prefix=None, size=len(PAYLOAD)), tmp_path / "ok")
    assert path.read_bytes() == PAYLOAD
    assert "NOT verified by checksum" in said and f"size {len(PAYLOAD):,} bytes verified" in said
    with pytest.raises(VECError) as err:
        run(spec_for(server, sha256_prefix=None, size=len(PAYLOAD) + 1), tmp_path / "bad")
    assert "\n" not in str(err.value)
    assert f"model-abc.pth has {len(PAYLOAD):,} bytes, expected {len(PAYLOAD) + 1:,}" in str(err.value)
    assert list((tmp_path / "bad").iterdir()) == []


# ----------------------------------------------------------------------------- Google Drive and FlowNet2

def test_gdown_reads_the_google_drive_pages_we_know():
    """The pages Google Drive puts in front of a large file, as gdown (which FlowNet2's download goes
    through) turns them into the file's address; a page with no way through is its error."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    page = ('<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
            '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>'
            '<input type="hidden" name="id" value="1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da">'
            '<input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="3f2a9c1e-0000-4000-8000-123456789abc"></form></body></html>')
    parts = urllib.parse.urlsplit(get_url_from_gdrive_confirmation(page))
    assert parts.netloc == "drive.usercontent.google.com" and parts.path == "/download"
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "id": "1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da", "export": "download", "confirm": "t",
        "uuid": "3f2a9c1e-0000-4000-8000-123456789abc"}
    old = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=Ab_1&amp;id=x">Download anyway</a>'
    old_parts = urllib.parse.urlsplit(get_url_from_gdrive_confirmation(old))
    assert dict(urllib.parse.parse_qsl(old_parts.query)) == {"export": "download", "confirm": "Ab_1", "id": "x"}
    with pytest.raises(FileURLRetrievalError):
        get_url_from_gdrive_confirmation("<html><body>Too many users have viewed or downloaded this file "
                                         "recently.</body></html>")


def test_flownet2_goes_through_gdown_and_an_unreachable_drive_is_one_line(server, tmp_path, monkeypatch, local_only):
    """The real FlowNet2 entry, its Drive address unchanged, with the machine's only way out a proxy on
    127.0.0.1 that refuses every tunnel: gdown asks it for Drive, and the refusal is one line with the
    manual steps. Nothing is left that looks like a checkpoint."""
    for key in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", server.base)
    monkeypatch.setenv("HTTP_PROXY", server.base)
    with pytest.raises(VECError) as err:
        run(WEIGHTS["flownet2"], tmp_path)
    message = str(err.value)
    assert "\n" not in message and "cannot reach drive.google.com" in message and "offline?" in message
    assert (f"download {WEIGHTS['flownet2'].page} by hand and save it as "
            f"{tmp_path / 'FlowNet2_checkpoint.pth.tar'}") in message
    assert server.requests == [("CONNECT drive.google.com:443", None)]  # asked for through gdown's session
    assert local_only == [] and not (tmp_path / "FlowNet2_checkpoint.pth.tar").exists()


def test_flownet2_entry_is_checked_by_size_and_by_loading(tmp_path):
    spec = WEIGHTS["flownet2"]
    small = tmp_path / "small.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, small)
    with pytest.raises(VECError, match=r"expected at least 650,075,336"):
        verify(spec, small)
    with pytest.raises(VECError, match=r"FlowNet2_checkpoint.pth.tar: it does not load as a FlowNet2 checkpoint"):
        verify(replace(spec, min_size=None), small)
    (tmp_path / "junk.pth").write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(VECError, match=r"does not load as a FlowNet2 checkpoint"):
        verify(replace(spec, min_size=None), tmp_path / "junk.pth")


@pytest.mark.slow  # writes a full 650 MB checkpoint
def test_flownet2_entry_accepts_a_full_flownet2_checkpoint(tmp_path):
    from FlowNet2_src.flownet2 import FlowNet2

    path = tmp_path / "FlowNet2_checkpoint.pth.tar"
    torch.save({"state_dict": FlowNet2().state_dict(), "epoch": 0, "best_EPE": 1.0}, path)
    said = verify(WEIGHTS["flownet2"], path)
    assert "NOT verified by checksum" in said and "loads as FlowNet2" in said


# ----------------------------------------------------------------------------- command line

@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """`python -m utils.weights ARGS` run in-process (its `main`), with `mirror` as VEC_WEIGHTS_MIRROR."""
    def run_main(*args, mirror: str | None = None) -> Ran:
        assert all(arg.startswith(LOCAL) for arg in args if "://" in arg)
        if mirror is not None:
            assert mirror.startswith(LOCAL)
            monkeypatch.setenv(weights.MIRROR_ENV, mirror)
        capsys.readouterr()
        code = weights.main(list(args))
        out, err = capsys.readouterr()
        monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
        return Ran(code, out, err)

    return run_main


def run_process(*args) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.pop(weights.MIRROR_ENV, None)
    assert all(arg.startswith(LOCAL) for arg in args if "://" in arg)
    return subprocess.run([sys.executable, "-m", "utils.weights", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_raft_stand_in_has_the_real_prefix():
    assert hashlib.sha256(RAFT_STAND_IN).hexdigest().startswith(WEIGHTS["raft"].sha256_prefix)


def test_cli_fetch_raft_from_mirror(server, tmp_path, cli):
    raft = WEIGHTS["raft"]
    server.files["/" + raft.filename] = RAFT_STAND_IN
    result = cli("fetch", "raft", "--dest", str(tmp_path), mirror=server.base)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / raft.filename).read_bytes() == RAFT_STAND_IN
    assert "SHA-256 ff5fadd5… verified" in result.stdout
    assert server.requests == [("/" + raft.filename, None)]

    again = cli("fetch", "raft", "--dest", str(tmp_path), mirror=server.base)  # present: no request
    assert again.returncode == 0 and "already present and verified" in again.stdout and len(server.requests) == 1
    listing = cli("list", "--dest", str(tmp_path), mirror=server.base)
    assert listing.returncode == 0 and len(server.requests) == 1
    assert f"raft: {tmp_path / raft.filename}" in listing.stdout
    assert f"source: {server.base}/{raft.filename}" in listing.stdout
    assert re.search(r"raft: .*\n  source: .*\n  status: present, verified", listing.stdout)
    assert re.search(r"flownet2: .*\n  source: .*\n  by hand: https://drive.google.com/.*\n  status: missing",
                     listing.stdout)


def test_cli_wrong_checksum_exits_2_with_one_line(server, tmp_path, cli):
    raft = WEIGHTS["raft"]
    server.files["/" + raft.filename] = PAYLOAD
    line = assert_one_line_error(cli("fetch", "raft", "--dest", str(tmp_path), mirror=server.base))
    assert f"checksum mismatch for {raft.filename}" in line and "ff5fadd5" in line and PAYLOAD_SHA[:8] in line
    assert f"download {raft.url} by hand" in line  # the official address, for doing it by hand
    assert list(tmp_path.iterdir()) == [] and len(server.requests) == 1


@pytest.mark.slow
def test_cli_dead_link_and_offline_exit_2_with_one_line(server, tmp_path, cli):
    # as a process: its exit status and everything it writes to stderr
    line = assert_one_line_error(run_process("fetch", "raft", "--dest", str(tmp_path), "--url", server.base + "/gone"))
    assert "HTTP 404" in line and f"save it as {tmp_path / WEIGHTS['raft'].filename}" in line
    line = assert_one_line_error(cli("fetch", "cascade_rcnn", "--dest", str(tmp_path),
                                     mirror=f"{LOCAL}{closed_port()}"))
    assert "cannot reach" in line and "offline?" in line and WEIGHTS["cascade_rcnn"].url in line
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoints_offer_the_fetch_command(tmp_path):
    from utils.flow.flownet2 import load_flownet2
    from utils.flow.raft import RaftFlow
    from utils.foreground.detectors import load_cascade_rcnn

    for name, load in (("flownet2", load_flownet2), ("raft", RaftFlow.from_checkpoint),
                       ("cascade_rcnn", load_cascade_rcnn)):
        with pytest.raises(VECError) as err:
            load(tmp_path / "missing.pth")
        assert fetch_hint(name) in str(err.value), name
