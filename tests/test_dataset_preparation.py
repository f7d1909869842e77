"""`python -m utils.datasets fetch|prepare` on small archives with the official archives' member
structure (tests/dataset_archives.py), served by a local HTTP server on 127.0.0.1 only.

The official archives' published SHA-256 cannot be matched by small stand-ins, so a test that
needs `fetch` to succeed gives it the table entry with its stand-in's checksum
(dataclasses.replace on utils.datasets.sources); `fetch` with the real table entry is what
stops on the stand-in (a file that is not the published one).
"""
from __future__ import annotations

import json
import tarfile
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_config
from tests.dataset_archives import avenue_archives, shanghaitech_archive, synthetic_clips, ucsd_archive
from tests.local_server import LOCAL, closed_port, local_only, serve
from utils.datasets import open_split
from utils.datasets.__main__ import MIRROR_ENV, main
from utils.datasets.archives import identify
from utils.datasets.prepare import (PREPARED_FILE, fetch_dataset, manual_steps, prepare_dataset,
                                    sortable_frame_names, staging_dir)
from utils.datasets.sources import SOURCES, find_source
from utils.infra.errors import VECError, VECWarning
from utils.infra.io import sha256_file


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return synthetic_clips(tmp_path_factory.mktemp("clips") / "synthetic")


@pytest.fixture(scope="module")
def archives(clips, tmp_path_factory):
    """One set of stand-in archives for the module's tests that do not alter them."""
    folder = tmp_path_factory.mktemp("archives")
    avenue, ground_truth = avenue_archives(clips, folder)
    return {"UCSDped2": [ucsd_archive(clips, folder / "UCSD_Anomaly_Dataset.tar.gz")],
            "avenue": [avenue, ground_truth],
            "ShanghaiTech": [shanghaitech_archive(clips, folder / "shanghaitech.tar.gz")]}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    with serve() as httpd:
        httpd.opened = local_only(monkeypatch)
        yield httpd


def stand_in(name: str, files: list[Path], work_bytes: int = 10**8):
    """The table entry of `name` with the stand-in archives' checksums and a small work size."""
    source = SOURCES[name]
    by_role = identify(files, source)
    return replace(source, work_bytes=work_bytes,
                   archives=tuple(replace(a, sha256=sha256_file(by_role[a.role])) for a in source.archives))


def publish(server, files: list[Path]) -> None:
    for path in files:
        server.files["/" + path.name] = path.read_bytes()


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        return (fetch_dataset if "mirror" in kwargs else prepare_dataset)(*args, progress=False, say=lambda line: None,
                                                                         **kwargs)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def looks_prepared(raw: Path, name: str) -> bool:
    return (raw / name).exists()


# ----------------------------------------------------------------------------- what a preparation writes

def test_fetch_ucsd_takes_ped2_only_and_keeps_its_frames_as_they_are(server, archives, clips, tmp_path):
    source = stand_in("UCSDped2", archives["UCSDped2"])
    publish(server, archives["UCSDped2"])
    raw = tmp_path / "raw"
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reports = fetch_dataset(source, raw, mirror=server.base, progress=False, say=lines.append)
    assert server.opened == [f"{server.base}/UCSD_Anomaly_Dataset.tar.gz"]
    assert sorted(p.name for p in raw.iterdir()) == ["UCSDped2"]  # no staging, the download deleted
    dataset = raw / "UCSDped2"
    assert not list(raw.rglob("*ped1*")) and not list(raw.rglob("._*"))  # Ped1 stays in the archive
    for v, files in clips.train.items():  # the archive's files, byte for byte
        assert [f.read_bytes() for f in files] == \
            [p.read_bytes() for p in sorted((dataset / "Train" / f"Train{v:03d}").iterdir())]
    assert reports["train"].frames == 36 and reports["test"].videos == 3
    assert "UCSDped2 train: 3 videos, 36 frames (published: 16 videos, 2,550 frames)" in lines
    assert "UCSDped2 test: 3 videos, 36 frames (published: 12 videos, 2,010 frames)" in lines
    missing = [str(w.message) for w in caught if issubclass(w.category, VECWarning)]
    assert any("Train004" in m and "Train016" in m and "13 of the published videos" in m for m in missing)
    assert any("Test004, Test005" in m for m in missing)
    test = open_split(dataset, "UCSDped2", "test")
    assert test.labels.sum() > 0 and test.has_pixel_masks
    record = json.loads((dataset / PREPARED_FILE).read_text())
    assert record["splits"]["test"]["missing"][:2] == ["Test004", "Test005"]


def test_fetch_avenue_decodes_its_videos_losslessly(server, archives, clips, tmp_path):
    source = stand_in("avenue", archives["avenue"])
    publish(server, archives["avenue"])
    raw = tmp_path / "raw"
    quiet(source, raw, mirror=server.base, keep_archives=True)
    assert sorted(p.name for p in (raw / "downloads").iterdir()) == ["Avenue_Dataset.zip", "ground_truth_demo.zip"]
    dataset = raw / "avenue"
    assert sorted(p.name for p in dataset.iterdir()) == ["ground_truth_demo", "prepared.json", "testing", "training"]
    for split, videos in (("training", clips.train), ("testing", clips.test)):
        for v, files in videos.items():
            frames = sorted((dataset / split / "frames" / f"{v:02d}").iterdir())
            assert [p.name for p in frames] == [f"{t:04d}.png" for t in range(len(files))]
            for frame, original in zip(frames, clips.frames(files)):
                assert np.array_equal(cv2.imread(str(frame)), original)  # lossless: the very pixels
    assert sorted(p.name for p in (dataset / "ground_truth_demo" / "testing_label_mask").iterdir()) == \
        ["1_label.mat", "2_label.mat", "3_label.mat"]
    test = open_split(dataset, "avenue", "test")
    expected = [int(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE).max() > 0) for v in clips.masks for m in clips.masks[v]]
    assert test.labels.tolist() == expected
    assert test.frame_paths[0].suffix == ".png"

    # prepared again from the kept downloads: checked, not downloaded again
    asked = len(server.requests)
    for entry in ("training", "testing", "ground_truth_demo", PREPARED_FILE):
        (dataset / entry).rename(tmp_path / entry)
    (dataset / "bboxes_train_obj_det_with_motion.npy").write_bytes(b"the reference's boxes")
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        fetch_dataset(source, raw, mirror=server.base, progress=False, say=lines.append)
    assert len(server.requests) == asked and any("already downloaded (SHA-256 verified)" in line for line in lines)
    assert (dataset / "bboxes_train_obj_det_with_motion.npy").read_bytes() == b"the reference's boxes"  # kept beside
    assert (dataset / PREPARED_FILE).is_file() and len(open_split(dataset, "avenue", "train")) == 36


def test_prepare_shanghaitech_sorts_frames_and_places_frame_and_pixel_masks(archives, clips, tmp_path):
    raw = tmp_path / "raw"
    source = stand_in("ShanghaiTech", archives["ShanghaiTech"])
    quiet(source, identify(archives["ShanghaiTech"], source), raw)
    dataset = raw / "ShanghaiTech"
    train = open_split(dataset, "ShanghaiTech", "train")
    assert train.video_names == ["01_001", "01_002", "01_003"]
    assert train.frame_paths[0].relative_to(dataset).as_posix() == "training/videosFrame/01_001/000000.png"
    test = open_split(dataset, "ShanghaiTech", "test")
    assert test.video_names == ["01_0014", "01_0015", "02_0128"]
    renamed = sorted(p.name for p in (dataset / "Testing" / "frames_part1" / "01_0015").iterdir())
    assert renamed == [f"{t:02d}.jpg" for t in range(12)]  # were 0.jpg … 11.jpg: now in frame order by name
    for i in range(len(test)):  # each frame is the JPEG of its own frame (ordered right)
        v = test.frame_video_idx[i]
        t = i - sum(test.video_lengths[:v - 1])
        original = clips.frames([clips.test[v][t]])[0]
        assert np.abs(test.read_frame(i).astype(int) - original).mean() < 3
    assert test.has_pixel_masks and test.read_mask(0).shape == (160, 240)
    masks = [cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 0 for v in clips.masks for m in clips.masks[v]]
    assert all(np.array_equal(test.read_mask(i), m) for i, m in enumerate(masks))
    assert test.labels.tolist() == [int(m.any()) for m in masks]


# ----------------------------------------------------------------------------- the scripts run on it

@pytest.mark.slow
@pytest.mark.parametrize("name", ["avenue", "ShanghaiTech"])
def test_calc_train_test_run_on_a_prepared_dataset(name, server, archives, tmp_path):
    """Avenue fetched, ShanghaiTech prepared: frames decoded from videos, .mat and .npy ground truth.
    (UCSDped2's archive holds its frames in the layout of the synthetic dataset, which
    tests/test_scripts.py runs end to end; the fast test above opens the fetched copy.)"""
    import calc_img_inputs
    import test as test_script
    import train

    source = stand_in(name, archives[name])
    if name == "ShanghaiTech":
        quiet(source, identify(archives[name], source), tmp_path / "raw_datasets")
    else:
        publish(server, archives[name])
        quiet(source, tmp_path / "raw_datasets", mirror=server.base)
    config = write_config(tmp_path, dataset_name=name)
    small = [f"{name}.flow_method=dis", f"{name}.detector=none", f"{name}.train_bbox_saved=False",
             f"{name}.test_bbox_saved=False", f"{name}.area_thr=10*10", f"{name}.min_area=10*10",
             f"{name}.blur_size=3", f"{name}.nf=4", f"{name}.epochs=1"]
    argv = ["--config", str(config)] + [arg for setting in small for arg in ("--set", setting)]
    for script in (calc_img_inputs, train, test_script):
        assert script.main(argv) == 0, script.__name__
    metrics = json.loads((tmp_path / "results" / name / "metrics.json").read_text())
    assert metrics["n_frames"] == 36 and 0 <= metrics["auroc_micro"] <= 1
    assert metrics["pixel_auroc"] is not None  # each dataset's pixel masks were found


# ----------------------------------------------------------------------------- checksums

def test_prepare_uses_a_repacked_archive_with_a_warning_naming_both_checksums(archives, tmp_path, capsys):
    archive = archives["UCSDped2"][0]
    code, out, err = run_cli(capsys, "prepare", "ucsdped2", "--archive", str(archive), "--dest", str(tmp_path))
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "SHA-256" in line)
    assert warning.startswith("warning: ") and sha256_file(archive) in warning
    assert SOURCES["UCSDped2"].archive("dataset").sha256 in warning
    assert "UCSDped2 train: 3 videos, 36 frames (published: 16 videos, 2,550 frames)" in out
    assert all(line.startswith("warning: ") for line in err.splitlines())
    assert (tmp_path / "UCSDped2" / PREPARED_FILE).is_file()
    code, out, _ = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(archive), "--dest", str(tmp_path))
    assert code == 0 and "already prepared" in out  # a second run changes nothing


def test_fetch_stops_on_an_archive_that_is_not_the_published_one(server, archives, tmp_path, capsys):
    publish(server, archives["UCSDped2"])
    code, _, err = run_cli(capsys, "fetch", "UCSDped2", "--dest", str(tmp_path), "--mirror", server.base)
    line = one_error_line(err)
    assert code == 2 and "checksum mismatch for UCSD_Anomaly_Dataset.tar.gz" in line
    assert SOURCES["UCSDped2"].archive("dataset").sha256 in line and sha256_file(archives["UCSDped2"][0]) in line
    assert "by hand from http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm" in line
    assert not looks_prepared(tmp_path, "UCSDped2") and not list((tmp_path / "downloads").iterdir())


# ----------------------------------------------------------------------------- failures leave nothing complete

def test_dead_link_and_offline_machine_are_one_line_with_the_manual_steps(server, tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(capsys, "fetch", "UCSDped2", "--dest", str(tmp_path), "--mirror", server.base)
    line = one_error_line(err)
    assert code == 2 and "HTTP 404" in line and f"{server.base}/UCSD_Anomaly_Dataset.tar.gz" in line
    assert ("download UCSD_Anomaly_Dataset.tar.gz by hand from http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm, "
            "then run `python -m utils.datasets prepare UCSDped2 --archive UCSD_Anomaly_Dataset.tar.gz`") in line
    assert manual_steps(SOURCES["avenue"]) == (
        "download Avenue_Dataset.zip ground_truth_demo.zip by hand from "
        "http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html, then run "
        "`python -m utils.datasets prepare avenue --archive Avenue_Dataset.zip ground_truth_demo.zip`")
    monkeypatch.setenv(MIRROR_ENV, f"{LOCAL}{closed_port()}")  # the mirror from the environment
    code, _, err = run_cli(capsys, "fetch", "UCSDped2", "--dest", str(tmp_path))
    line = one_error_line(err)
    assert code == 2 and "cannot reach 127.0.0.1" in line and "offline?" in line and "by hand" in line
    monkeypatch.delenv(MIRROR_ENV)
    code, _, err = run_cli(capsys, "fetch", "ShanghaiTech", "--dest", str(tmp_path))
    assert code == 2 and "no stable public download address" in one_error_line(err)
    assert "prepare ShanghaiTech --archive shanghaitech.tar.gz" in err
    assert not any(looks_prepared(tmp_path, name) for name in SOURCES)


def test_interrupted_download_leaves_a_partial_file_and_a_rerun_finishes(server, archives, tmp_path):
    source = stand_in("UCSDped2", archives["UCSDped2"])
    publish(server, archives["UCSDped2"])
    server.cut_next = True
    with pytest.raises(VECError) as err:
        quiet(source, tmp_path, mirror=server.base)
    assert "\n" not in str(err.value) and "interrupted" in str(err.value) and "run the command again" in str(err.value)
    assert not looks_prepared(tmp_path, "UCSDped2")
    partial = tmp_path / "downloads" / "UCSD_Anomaly_Dataset.tar.gz.partial"
    half = partial.stat().st_size
    assert half == len(server.files["/UCSD_Anomaly_Dataset.tar.gz"]) // 2
    quiet(source, tmp_path, mirror=server.base)
    assert server.requests[-1] == ("/UCSD_Anomaly_Dataset.tar.gz", f"bytes={half}-")  # resumed, not restarted
    assert open_split(tmp_path / "UCSDped2", "UCSDped2", "train").video_names == ["Train001", "Train002", "Train003"]
    assert not (tmp_path / "downloads").exists()


def test_not_enough_disk_is_one_line_before_anything_is_written(server, archives, tmp_path):
    publish(server, archives["UCSDped2"])
    huge = stand_in("UCSDped2", archives["UCSDped2"], work_bytes=2**62)
    with pytest.raises(VECError, match=r"^not enough disk space for preparing UCSDped2 in .*: about .* GiB needed"):
        quiet(huge, tmp_path, mirror=server.base)
    assert server.requests == [] and list(tmp_path.iterdir()) == []
    server.announce["/UCSD_Anomaly_Dataset.tar.gz"] = 2**62  # a server announcing more than the disk holds
    with pytest.raises(VECError) as err:
        quiet(stand_in("UCSDped2", archives["UCSDped2"]), tmp_path, mirror=server.base)
    assert str(err.value).startswith("not enough disk space for downloading UCSD_Anomaly_Dataset.tar.gz")
    assert "\n" not in str(err.value) and not list((tmp_path / "downloads").iterdir())


def test_a_disk_that_fills_up_while_downloading_is_one_line(server, archives, tmp_path):
    """The partial download is /dev/full, where every write fails with ENOSPC."""
    publish(server, archives["UCSDped2"])
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "UCSD_Anomaly_Dataset.tar.gz.partial").symlink_to("/dev/full")
    with pytest.raises(VECError) as err:
        quiet(stand_in("UCSDped2", archives["UCSDped2"]), tmp_path, mirror=server.base)
    assert "\n" not in str(err.value) and "No space left on device" in str(err.value)
    assert "make room and run the command again" in str(err.value)
    assert not looks_prepared(tmp_path, "UCSDped2")
    assert not (tmp_path / "downloads" / "UCSD_Anomaly_Dataset.tar.gz").exists()


def test_a_preparation_interrupted_while_decoding_continues_on_the_next_run(archives, clips, tmp_path):
    source = stand_in("avenue", archives["avenue"])
    files = identify(archives["avenue"], source)
    decoded = []

    def stop_after_first_video(line: str) -> None:
        if "->" in line:
            decoded.append(line)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        prepare_dataset(source, files, tmp_path, jobs=1, progress=False, say=stop_after_first_video)
    assert len(decoded) == 1 and not looks_prepared(tmp_path, "avenue")
    frames = staging_dir(tmp_path, source) / "dataset" / "training" / "frames"
    done = sorted(p.name for p in frames.iterdir())  # whole videos only: a started one is finished
    assert "01" in done and len(done) < 3 and all(len(list((frames / v).iterdir())) == 12 for v in done)
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VECWarning)
        prepare_dataset(source, files, tmp_path, jobs=1, progress=False, say=lines.append)
    assert not any("extracting" in line for line in lines)  # the extracted archive was reused
    again = [line.split(": ")[1].split(".avi")[0] for line in lines
             if line.startswith("avenue train:") and "->" in line]
    assert again and not set(again) & set(done)  # finished videos were not decoded again
    assert open_split(tmp_path / "avenue", "avenue", "train").video_lengths == [12, 12, 12]
    assert not staging_dir(tmp_path, source).exists()


# ----------------------------------------------------------------------------- subsets and ground truth

def test_a_repacked_avenue_without_some_test_videos_prepares_with_a_warning(clips, tmp_path):
    files = avenue_archives(clips, tmp_path / "archives", leave_out_test=(2,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reports = prepare_dataset(stand_in("avenue", list(files)), identify(list(files), SOURCES["avenue"]),
                                  tmp_path / "raw", progress=False, say=lambda line: None)
    messages = [str(w.message) for w in caught if issubclass(w.category, VECWarning)]
    assert any(m.startswith("avenue test: 19 of the published videos are not in the archive: 02, 04, 05")
               for m in messages)
    assert reports["test"].missing[0] == "02"
    test = open_split(tmp_path / "raw" / "avenue", "avenue", "test")
    assert test.video_names == ["01", "03"]  # 03's ground truth is 3_label.mat, found by the video's name
    expected = [int(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE).max() > 0) for v in (1, 3) for m in clips.masks[v]]
    assert test.labels.tolist() == expected


def test_ground_truth_that_does_not_line_up_is_one_line_naming_the_video(clips, tmp_path, capsys):
    files = avenue_archives(clips, tmp_path / "archives", short_gt=2)
    code, _, err = run_cli(capsys, "prepare", "avenue", "--archive", *map(str, files), "--dest", str(tmp_path / "raw"))
    line = one_error_line("\n".join(l for l in err.splitlines() if not l.startswith("warning: ")))
    assert code == 2 and "11 labelled frames for 12 frames of test video 02" in line
    assert "delete" in line and str(tmp_path / "raw" / "avenue.partial") in line
    assert not looks_prepared(tmp_path / "raw", "avenue")

    archive = shanghaitech_archive(clips, tmp_path / "st" / "shanghaitech.tar.gz", short_pixel_mask="02_0128")
    with pytest.raises(VECError) as error:
        quiet(stand_in("ShanghaiTech", [archive]), {"dataset": archive}, tmp_path / "raw")
    assert "11 pixel masks for 12 frames of video 02_0128" in str(error.value) and "\n" not in str(error.value)
    assert not looks_prepared(tmp_path / "raw", "ShanghaiTech")


def test_a_dataset_this_command_did_not_write_is_left_alone(archives, tmp_path, capsys):
    own = tmp_path / "UCSDped2" / "Train" / "Train001"
    own.mkdir(parents=True)
    (own / "001.tif").write_bytes(b"my own copy")
    code, _, err = run_cli(capsys, "prepare", "UCSDped2", "--archive", str(archives["UCSDped2"][0]),
                           "--dest", str(tmp_path))
    line = one_error_line(err)
    assert code == 2 and f"{tmp_path / 'UCSDped2' / 'Train'} is already there (not prepared by this command)" in line
    assert (own / "001.tif").read_bytes() == b"my own copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["UCSDped2"]


# ----------------------------------------------------------------------------- archives and names

def test_archives_are_told_apart_by_what_they_hold(archives, tmp_path):
    avenue, ground_truth = archives["avenue"]
    assert identify([ground_truth, avenue], SOURCES["avenue"]) == {"dataset": avenue, "ground_truth": ground_truth}
    with pytest.raises(VECError, match=r"ground_truth_demo.zip is missing: download it from http://www.cse.cuhk"):
        identify([avenue], SOURCES["avenue"])
    with pytest.raises(VECError, match=r"is none of avenue's archives"):
        identify([avenue, archives["UCSDped2"][0]], SOURCES["avenue"])
    with pytest.raises(VECError, match=r"is not UCSD_Anomaly_Dataset.tar.gz: it holds no UCSDped2/Train/ folder"):
        quiet(SOURCES["UCSDped2"], {"dataset": archives["ShanghaiTech"][0]}, tmp_path)
    assert find_source("SHANGHAITECH") is SOURCES["ShanghaiTech"]


def test_an_archive_with_a_link_out_of_its_folder_is_not_extracted(clips, tmp_path):
    archive = tmp_path / "UCSD_Anomaly_Dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(clips.train[1][0], arcname="UCSDped2/Train/Train001/001.tif")
        link = tarfile.TarInfo("UCSDped2/Train/Train001/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    with pytest.raises(VECError, match=r"holds 'UCSDped2/Train/Train001/escape', a link or a path leading out"):
        quiet(SOURCES["UCSDped2"], {"dataset": archive}, tmp_path / "raw")
    assert not (tmp_path / "raw" / "UCSDped2").exists()
    assert not list((tmp_path / "raw").rglob("escape"))


def test_frame_names_are_made_to_sort_in_frame_order(tmp_path):
    for name in ("0.jpg", "1.jpg", "2.jpg", "10.jpg", "9.jpg"):
        (tmp_path / name).write_bytes(name.encode())
    sortable_frame_names(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00.jpg", "01.jpg", "02.jpg", "09.jpg", "10.jpg"]
    assert (tmp_path / "09.jpg").read_bytes() == b"9.jpg"  # renamed, not rewritten
    sortable_frame_names(tmp_path)  # already in order: nothing changes
    assert len(list(tmp_path.iterdir())) == 5


def test_layout_reads_decoded_pngs_skips_hidden_files_and_refuses_mixed_frames(tmp_path):
    folder = tmp_path / "training" / "frames" / "01"
    folder.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(folder / f"{t:04d}.png"), np.full((8, 8, 3), t, np.uint8))
    (folder / "._0000.png").write_bytes(b"\x00\x05\x16\x07")  # a Mac's resource fork, not a frame
    (tmp_path / "testing" / "frames" / "01").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "testing" / "frames" / "01" / "0000.jpg"), np.zeros((8, 8, 3), np.uint8))
    train = open_split(tmp_path, "avenue", "train")
    assert [p.name for p in train.frame_paths] == ["0000.png", "0001.png", "0002.png"]
    with pytest.raises(VECError, match=r"holds no frames \(\.jpg\)"):
        open_split(tmp_path, "avenue", "train", extension=".jpg")  # one kind named: only that kind is read
    cv2.imwrite(str(folder / "0003.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(VECError, match=r"holds frames of several kinds \(\.jpg, \.png\)"):
        open_split(tmp_path, "avenue", "train")
