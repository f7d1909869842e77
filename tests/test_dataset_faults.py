"""`python -m utils.datasets prepare|list` on damaged archives, two runs at once, a rerun with
another archive and a staging folder with nothing in it: one line, a non-zero exit, nothing
half-published, and `list` telling what is on disk.

The archives are the stand-ins of tests/dataset_archives.py (the official member structure),
damaged here byte by byte.
"""
from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import tarfile
import textwrap
import warnings
import zipfile
import zlib
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO
from tests.dataset_archives import avenue_archives, synthetic_clips, ucsd_archive
from tests.test_dataset_preparation import one_error_line, run_cli, stand_in
from utils.datasets import open_split
from utils.datasets.__main__ import main
from utils.datasets.prepare import PREPARED_FILE, prepare_dataset, staging_dir
from utils.datasets.sources import SOURCES
from utils.infra.errors import VECWarning


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return synthetic_clips(tmp_path_factory.mktemp("clips") / "synthetic")


def last_error(err: str) -> str:
    """The error line, after any warning lines (a stand-in is not the published file)."""
    return one_error_line("\n".join(line for line in err.splitlines() if not line.startswith("warning: ")))


def run_list(capsys, raw: Path) -> str:
    capsys.readouterr()
    assert main(["list", "--dest", str(raw)]) == 0
    return capsys.readouterr().out


def left_on_disk(raw: Path) -> list[str]:
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*")) if raw.exists() else []


def member_data_offset(archive: Path, name: str) -> int:
    """Where the (compressed) bytes of zip member `name` start in the file."""
    with zipfile.ZipFile(archive) as opened:
        info = opened.getinfo(name)
    data = archive.read_bytes()
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_length + extra_length


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- damaged zips

def test_a_zip_member_that_fails_its_crc_is_one_line_naming_the_member(clips, tmp_path, capsys):
    dataset, ground_truth = avenue_archives(clips, tmp_path / "archives")
    member = "Avenue Dataset/testing_videos/02.avi"
    flip_byte(dataset, member_data_offset(dataset, member) + 500)  # one byte of a stored video
    raw = tmp_path / "raw"
    code, _, err = run_cli(capsys, "prepare", "avenue", "--archive", str(dataset), str(ground_truth),
                           "--dest", str(raw))
    line = last_error(err)
    assert code == 2 and line.startswith(f"error: {dataset}: its member {member!r} is damaged (BadZipFile: Bad CRC-32")
    assert line.endswith("download Avenue_Dataset.zip again")
    assert left_on_disk(raw) == []  # nothing extracted was kept, no staging folder, no lock


def test_a_zip_member_that_inflates_past_its_declared_size_is_one_line(clips, tmp_path, capsys):
    dataset, ground_truth = avenue_archives(clips, tmp_path / "archives")
    member = "ground_truth_demo/testing_label_mask/2_label.mat"
    deflated = tmp_path / "archives" / "ground_truth_deflated.zip"
    with zipfile.ZipFile(ground_truth) as stored, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for info in stored.infolist():
            out.writestr(info.filename, stored.read(info))
    data = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as opened:
        info = opened.getinfo(member)
    declared = info.file_size // 2
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # the local header's uncompressed size
    central = data.find(b"PK\x01\x02")  # the central directory's entries, up to the member's
    while data[central + 46:central + 46 + len(member)] != member.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, declared)  # and the central directory's: what zipfile trusts
    deflated.write_bytes(bytes(data))
    with zipfile.ZipFile(deflated) as opened:
        assert opened.getinfo(member).file_size == declared

    raw = tmp_path / "raw"
    code, out, err = run_cli(capsys, "prepare", "avenue", "--archive", str(dataset), str(deflated), "--dest", str(raw))
    line = last_error(err)
    assert code == 2 and line.startswith(f"error: {deflated}: its member {member!r} is damaged (BadZipFile:")
    assert line.endswith("download ground_truth_deflated.zip again") and "Traceback" not in out
    assert not (raw / "avenue").exists()  # nothing published
    # the intact archive's extraction is kept for a rerun with a good copy; nothing of the damaged one
    assert sorted(p.name for p in (staging_dir(raw, SOURCES["avenue"]) / "extracted").iterdir()) == ["dataset"]
    out = run_list(capsys, raw)
    assert "status: partly prepared from Avenue_Dataset.zip (rerun" in out


# ----------------------------------------------------------------------------- damaged .tar.gz

def test_a_tar_gz_whose_contents_differ_from_its_gzip_crc_is_not_prepared(clips, tmp_path, capsys):
    """A byte that decompresses to another byte: the tar reads well and only gzip's CRC-32 at the
    very end of the stream, which tarfile never reaches, tells. Before this was checked the
    dataset was "ready" with a changed frame."""
    good = ucsd_archive(clips, tmp_path / "good.tar.gz")
    tar = gzip.decompress(good.read_bytes())
    with tarfile.open(good) as opened:
        frame = opened.getmember("UCSD_Anomaly_Dataset.v1p2/UCSDped2/Train/Train002/005.tif")
    changed = bytearray(tar)
    changed[frame.offset_data + frame.size // 2] ^= 0x55
    damaged = tmp_path / "UCSD_Anomaly_Dataset.tar.gz"
    # the changed tar, compressed, with the trailer (CRC-32 and length) of the tar that was packed
    damaged.write_bytes(gzip.compress(bytes(changed))[:-8] + struct.pack("<II", zlib.crc32(tar), len(tar)))
    raw = tmp_path / "raw"
    code, out, err = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(damaged), "--dest", str(raw))
    line = last_error(err)
    assert code == 2 and line.startswith(f"error: {damaged} is damaged (BadGzipFile: CRC check failed")
    assert line.endswith("download it again") and "ready" not in out
    assert left_on_disk(raw) == []


@pytest.mark.parametrize("where", ["third", "half", "two thirds", "cut short"])
def test_a_tar_gz_with_a_flipped_byte_or_cut_short_is_one_line(clips, tmp_path, capsys, where):
    archive = ucsd_archive(clips, tmp_path / "UCSD_Anomaly_Dataset.tar.gz")
    size = archive.stat().st_size
    if where == "cut short":
        archive.write_bytes(archive.read_bytes()[:size * 3 // 4])
    else:  # a byte of the deflate stream, past the gzip header
        flip_byte(archive, int(size * {"third": 1 / 3, "half": 1 / 2, "two thirds": 2 / 3}[where]))
    raw = tmp_path / "raw"
    code, out, err = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(archive), "--dest", str(raw))
    line = last_error(err)
    assert code == 2 and str(archive) in line and line.endswith("download it again"), line
    assert "damaged" in line or "cannot be read" in line
    assert "ready" not in out and left_on_disk(raw) == []


# ----------------------------------------------------------------------------- two runs at once

PAUSED_RUN = textwrap.dedent("""
    import sys, warnings
    from dataclasses import replace
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from utils.datasets.archives import identify
    from utils.datasets.prepare import prepare_dataset
    from utils.datasets.sources import SOURCES
    from utils.infra.errors import VECWarning

    warnings.simplefilter("ignore", VECWarning)
    source = replace(SOURCES["avenue"], work_bytes=10**8)
    files = identify([Path(p) for p in sys.argv[3:]], source)

    def say(line):
        print(line, flush=True)
        if "extracting" in line and "paused" not in say.__dict__:
            say.paused = True
            print("paused", flush=True)
            sys.stdin.readline()  # the other run is tried now, while this one holds the dataset

    prepare_dataset(source, files, Path(sys.argv[2]), jobs=1, progress=False, say=say)
""")


@pytest.mark.slow
def test_a_second_prepare_of_a_dataset_being_prepared_stops_with_one_line_naming_the_first(clips, tmp_path, capsys):
    dataset, ground_truth = avenue_archives(clips, tmp_path / "archives")
    raw = tmp_path / "raw"
    first = subprocess.Popen([sys.executable, "-c", PAUSED_RUN, str(REPO), str(raw), str(dataset), str(ground_truth)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or lines[-1] != "paused":
            line = first.stdout.readline()
            assert line, first.stderr.read()
            lines.append(line.strip())
        code, out, err = run_cli(capsys, "prepare", "avenue", "--archive", str(dataset), str(ground_truth),
                                 "--dest", str(raw))
        line = last_error(err)
        assert code == 2 and line.startswith(f"error: {raw / 'avenue'} is in use by another run (pid {first.pid}, ")
        assert "wait for it to finish" in line and out == ""
        first.stdin.write("\n")
        first.stdin.flush()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0 and "Traceback" not in stderr, stderr
    assert stdout.strip().splitlines()[-1] == f"avenue is ready in {raw / 'avenue'}"
    assert sorted(p.name for p in raw.iterdir()) == ["avenue"]  # no staging folder, no lock left
    train = open_split(raw / "avenue", "avenue", "train")
    assert all((cv2.imread(str(path)) == cv2.imread(str(clips.train[1][t]))).all()
               for t, path in enumerate(train.frame_paths[:12]))


@pytest.mark.slow
def test_two_prepare_commands_started_together_prepare_the_dataset_once(clips, tmp_path):
    """However the two interleave: one prepares it, the other stops on the lock or finds it
    prepared; no traceback, no second publication, nothing left beside the dataset."""
    archive = ucsd_archive(clips, tmp_path / "UCSD_Anomaly_Dataset.tar.gz")
    raw = tmp_path / "raw"
    command = [sys.executable, "-m", "utils.datasets", "prepare", "UCSDped2", "--archive", str(archive),
               "--dest", str(raw), "--no-progress"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.stdout.read(), run.stderr.read()) for run in runs]
    for code, out, err in results:
        assert "Traceback" not in err, err
        if code == 2:
            assert err.splitlines()[-1].startswith(f"error: {raw / 'UCSDped2'} is in use by another run (pid ")
        else:
            assert code == 0 and ("is ready in" in out or "is already prepared" in out), (out, err)
    assert sum("is ready in" in out for _, out, _ in results) == 1
    assert sorted(p.name for p in raw.iterdir()) == ["UCSDped2"]
    assert open_split(raw / "UCSDped2", "UCSDped2", "test").video_names == ["Test001", "Test002", "Test003"]


# ----------------------------------------------------------------------------- a rerun with another archive

def stop_when_verifying(line: str) -> None:
    if line.startswith("UCSDped2 train:"):
        raise KeyboardInterrupt  # killed after extracting, before publishing


def test_a_staging_folder_made_from_another_archive_is_discarded_not_published(clips, tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = ucsd_archive(clips, tmp_path / "a" / "UCSD_Anomaly_Dataset.tar.gz")
    second = ucsd_archive(clips, tmp_path / "b" / "UCSD_Anomaly_Dataset.tar.gz", leave_out=("Test002",))
    raw = tmp_path / "raw"
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        prepare_dataset(stand_in("UCSDped2", [first]), {"dataset": first}, raw, progress=False, say=stop_when_verifying)
    staging = staging_dir(raw, SOURCES["UCSDped2"])
    assert (staging / "dataset" / "Test" / "Test002").is_dir()
    out = run_list(capsys, raw)
    assert "status: partly prepared from UCSD_Anomaly_Dataset.tar.gz (rerun" in out

    code, out, err = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(second), "--dest", str(raw))
    assert code == 0 and "Traceback" not in err, err
    assert (f"UCSDped2: {staging} was made from another file (UCSD_Anomaly_Dataset.tar.gz, "
            f"{first.stat().st_size:,} bytes), not from {second}: discarding it and starting over") in out.splitlines()
    assert open_split(raw / "UCSDped2", "UCSDped2", "test").video_names == ["Test001", "Test003"]  # the second's
    assert json.loads((raw / "UCSDped2" / PREPARED_FILE).read_text())["archives"] == {"dataset": str(second)}
    assert sorted(p.name for p in raw.iterdir()) == ["UCSDped2"]


def test_a_rerun_with_the_same_archive_under_another_name_continues(clips, tmp_path):
    archive = ucsd_archive(clips, tmp_path / "UCSD_Anomaly_Dataset.tar.gz")
    raw = tmp_path / "raw"
    source = stand_in("UCSDped2", [archive])
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        prepare_dataset(source, {"dataset": archive}, raw, progress=False, say=stop_when_verifying)
    renamed = archive.rename(tmp_path / "ucsd copy.tar.gz")
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        prepare_dataset(source, {"dataset": renamed}, raw, progress=False, say=lines.append)
    assert not any("discarding" in line or "extracting" in line for line in lines), lines  # reused as it was
    assert lines[-1] == f"UCSDped2 is ready in {raw / 'UCSDped2'}"


# ----------------------------------------------------------------------------- list

def test_list_tells_an_empty_staging_folder_from_a_partly_prepared_one(clips, tmp_path, capsys):
    raw = tmp_path / "raw"
    not_ucsd = avenue_archives(clips, tmp_path / "archives")[0]
    code, _, err = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(not_ucsd), "--dest", str(raw))
    assert code == 2 and "is not UCSD_Anomaly_Dataset.tar.gz" in last_error(err)
    assert left_on_disk(raw) == []  # a refused archive leaves no staging folder

    staging = staging_dir(raw, SOURCES["UCSDped2"])
    (staging / "extracted").mkdir(parents=True)  # as earlier versions left it: folders, no file
    out = run_list(capsys, raw)
    assert out.splitlines()[1] == (f"  status: not prepared (the empty folder {staging} is left over from a run "
                                    "that extracted nothing: delete it)")
    (staging / "extracted" / "dataset").mkdir()
    (staging / "extracted" / "dataset" / "001.tif").write_bytes(b"frame")
    out = run_list(capsys, raw)
    assert out.splitlines()[1] == "  status: partly prepared (rerun the command to continue)"
    assert "avenue: " in out and out.count("status: not prepared\n") == 2
