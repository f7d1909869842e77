"""Official archives -> raw_datasets/<name>/ in the reference's layout: resumable, atomic, verified.

    fetch_dataset(source, raw_dir)               download the official archives, then prepare them
    prepare_dataset(source, archives, raw_dir)   extract, convert, verify, publish

The work happens in raw_datasets/<name>.partial/:

    extracted/<role>/   the wanted folders of each archive, nothing else (complete or absent)
    dataset/            the future raw_datasets/<name>/: frame folders moved out of extracted/,
                        each video file decoded into a folder of lossless PNGs (complete or
                        absent, one folder per video), ground truth moved where the layout reads it

    archives.json       which archive file each extracted/<role>/ came from (utils.datasets.archives.fingerprint)

Only when both splits open with their ground truth lined up, video by video, does dataset/
become raw_datasets/<name>/ (one rename), with prepared.json inside. A half-prepared dataset
never sits under that name, and a rerun with the same archives continues with what
raw_datasets/<name>.partial/ holds; a rerun with other archives discards it. One run at a
time prepares a dataset: it holds raw_datasets/.<name>.prepare.lock (utils/infra/run_lock.py).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from utils.datasets.archives import extract, fingerprint, index_archive
from utils.datasets.layouts import open_split
from utils.datasets.sources import PNG_SHARE, DatasetSource
from utils.datasets.split import VideoSplit
from utils.infra.download import TIMEOUT_S, check_free_space, download, one_line
from utils.infra.errors import VECError, VECWarning
from utils.infra.io import atomic_dir, make_dirs, remove_empty_folders, sha256_file, write_json
from utils.infra.run_lock import run_lock
from utils.infra.video_frames import VideoFile, declared_properties

PREPARED_FILE = "prepared.json"  # in raw_datasets/<name>/ once it is complete
DOWNLOADS = "downloads"  # below raw_datasets/: the archives `fetch` downloads
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg")
_TOP_FILE = ".top"  # in extracted/<role>/: the archive's top folder
_MADE_FROM = "archives.json"  # in the staging folder: role -> the fingerprint of the file extracted
Say = Callable[[str], None]


@dataclass
class SplitReport:
    """A prepared split beside its published figures."""

    split: str
    videos: int
    frames: int
    published_videos: int
    published_frames: int
    missing: list[str] = field(default_factory=list)  # published videos the archive did not hold
    extra: list[str] = field(default_factory=list)  # videos that are not among the published ones

    def line(self, name: str) -> str:
        return (f"{name} {self.split}: {self.videos} videos, {self.frames:,} frames "
                f"(published: {self.published_videos} videos, {self.published_frames:,} frames)")


def staging_dir(raw_dir: Path, source: DatasetSource) -> Path:
    return Path(raw_dir) / f"{source.name}.partial"


def is_prepared(raw_dir: Path, source: DatasetSource) -> bool:
    return (Path(raw_dir) / source.name / PREPARED_FILE).is_file()


def preparing_lock(raw_dir: Path, source: DatasetSource) -> Path:
    """The lock held by the one `fetch` or `prepare` run of `source` at a time in raw_dir."""
    return Path(raw_dir) / f".{source.name}.prepare.lock"


def preparation_status(raw_dir: Path, source: DatasetSource) -> str:
    """Prepared, partly prepared (from which archives), or not; an empty staging folder is not a start."""
    if is_prepared(raw_dir, source):
        return "prepared"
    staging = staging_dir(raw_dir, source)
    if not staging.is_dir():
        return "not prepared"
    if not any(path.is_file() for path in staging.rglob("*")):
        return f"not prepared (the empty folder {staging} is left over from a run that extracted nothing: delete it)"
    made_from = ", ".join(entry["file"] for entry in _made_from(staging).values())
    return f"partly prepared{f' from {made_from}' if made_from else ''} (rerun the command to continue)"


def manual_steps(source: DatasetSource) -> str:
    """The one line telling a user how to do without the download: fetch by hand, then prepare."""
    files = " ".join(a.filename for a in source.archives)
    pages = " and ".join(sorted({a.page for a in source.archives}))
    return (f"download {files} by hand from {pages}, then run "
            f"`python -m utils.datasets prepare {source.name} --archive {files}`")


# ----------------------------------------------------------------------------- fetch

def fetch_dataset(source: DatasetSource, raw_dir: Path, *, mirror: str | None = None, keep_archives: bool = False,
                  jobs: int | None = None, progress: bool = True, timeout: float = TIMEOUT_S,
                  say: Say = print) -> dict[str, SplitReport]:
    """Download `source`'s official archives into raw_dir/downloads/ (resumable, SHA-256 checked: a
    different file stops here) and prepare raw_dir/<name>/ from them; the archives are deleted
    afterwards unless `keep_archives`. `mirror` replaces each archive's address by mirror/<file name>."""
    raw_dir = Path(raw_dir)
    with run_lock(preparing_lock(raw_dir, source), in_use=raw_dir / source.name):
        return _fetch_dataset(source, raw_dir, mirror, keep_archives, jobs, progress, timeout, say)


def _fetch_dataset(source: DatasetSource, raw_dir: Path, mirror: str | None, keep_archives: bool, jobs: int | None,
                   progress: bool, timeout: float, say: Say) -> dict[str, SplitReport]:
    if is_prepared(raw_dir, source):
        return already_prepared(source, raw_dir, say)
    if mirror is None and any(a.url is None for a in source.archives):
        raise VECError(f"{source.name} has no stable public download address: {manual_steps(source)}")
    staging, downloads = staging_dir(raw_dir, source), raw_dir / DOWNLOADS
    paths = {archive.role: downloads / archive.filename for archive in source.archives}
    _discard_if_made_from_others(source, paths, staging, True, say)
    if not staging.exists():
        check_free_space(raw_dir, source.work_bytes, f"preparing {source.name}")
    for archive in source.archives:
        path = paths[archive.role]
        if (staging / "extracted" / archive.role).is_dir():
            continue  # extracted by an earlier run
        if path.is_file():
            actual = sha256_file(path)
            if actual != archive.sha256:
                raise VECError(f"{path} has SHA-256 {actual}, not the published {archive.sha256}: delete it and "
                               "run the command again, or prepare from it anyway with "
                               f"`python -m utils.datasets prepare {source.name} --archive {path} ...`")
            say(f"{source.name}: {path} is already downloaded (SHA-256 verified)")
            continue
        url = f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url
        download(url, path, label=archive.filename, manual=manual_steps(source), sha256=archive.sha256,
                 progress=progress, timeout=timeout, say=say)
        say(f"{source.name}: saved {path} (SHA-256 verified)")
    reports = prepare_dataset(source, paths, raw_dir, published=True, jobs=jobs, progress=progress, say=say)
    if not keep_archives:
        for path in paths.values():
            path.unlink(missing_ok=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return reports


# ----------------------------------------------------------------------------- prepare

def prepare_dataset(source: DatasetSource, archives: dict[str, Path], raw_dir: Path, *, published: bool = False,
                    jobs: int | None = None, progress: bool = True, say: Say = print) -> dict[str, SplitReport]:
    """Prepare raw_dir/<name>/ from `archives` (role -> file, see utils.datasets.archives.identify).

    `published`: the files were checked against the published SHA-256 already (fetch); else
    each is checked here and a different one is used with a warning naming both checksums.
    Returns the splits' reports; a warning names the videos a repacked copy left out, and
    ground truth that does not line up with a video's frames is an error naming the video.
    """
    raw_dir = Path(raw_dir)
    with run_lock(preparing_lock(raw_dir, source), in_use=raw_dir / source.name):
        return _prepare_dataset(source, archives, raw_dir, published, jobs, progress, say)


def _prepare_dataset(source: DatasetSource, archives: dict[str, Path], raw_dir: Path, published: bool,
                     jobs: int | None, progress: bool, say: Say) -> dict[str, SplitReport]:
    target, staging = raw_dir / source.name, staging_dir(raw_dir, source)
    if is_prepared(raw_dir, source):
        return already_prepared(source, raw_dir, say)
    if target.exists() and not staging.exists():
        present = [entry for entry in source.layout_entries if (target / entry).exists()]
        if present:
            raise VECError(f"{target / present[0]} is already there (not prepared by this command); move it away "
                           "to prepare the dataset from the archives, or keep using it as it is")
    _discard_if_made_from_others(source, archives, staging, published, say)
    if not staging.exists():
        check_free_space(raw_dir, source.work_bytes, f"preparing {source.name}")
    make_dirs(staging)
    try:
        parts = {archive.role: _extracted(source, archive, archives.get(archive.role), staging, published, say)
                 for archive in source.archives}
    except BaseException:
        remove_empty_folders([staging])  # an archive refused before anything was extracted leaves no trace
        raise
    dataset = staging / "dataset"
    decode = _Decoder(jobs or min(8, os.cpu_count() or 1), progress, say)
    _CONVERTERS[source.name](parts, dataset, decode)
    try:
        reports = verify_dataset(source, dataset, say)
    except VECError as err:
        raise VECError(f"{one_line(err)}; the archive does not hold the dataset as published: delete {staging} "
                       "and prepare the dataset from the official archive") from None
    write_json(dataset / PREPARED_FILE, {
        "dataset": source.name, "prepared_by": "python -m utils.datasets",
        "archives": {role: str(path) for role, path in archives.items()},
        "splits": {report.split: vars(report) for report in reports.values()}})
    _publish(dataset, target)
    shutil.rmtree(staging)
    say(f"{source.name} is ready in {target}")
    return reports


def already_prepared(source: DatasetSource, raw_dir: Path, say: Say) -> dict[str, SplitReport]:
    target = Path(raw_dir) / source.name
    record = json.loads((target / PREPARED_FILE).read_text())
    reports = {split: SplitReport(**values) for split, values in record["splits"].items()}
    for report in reports.values():
        say(report.line(source.name))
    say(f"{source.name} is already prepared in {target} (delete that folder to prepare it again)")
    return reports


def _extracted(source: DatasetSource, archive, path: Path | None, staging: Path, published: bool, say: Say) -> Path:
    """The archive's top folder below staging/extracted/<role>/, extracting it first if an earlier run did not."""
    folder = staging / "extracted" / archive.role
    if not folder.is_dir():
        if path is None:
            raise VECError(f"{source.name} needs {archive.filename}; name it with --archive")
        is_published = published
        if not published:
            say(f"{source.name}: checking the SHA-256 of {path}")
            actual = sha256_file(path)
            is_published = actual == archive.sha256
            if not is_published:
                warnings.warn(VECWarning(
                    f"{path} has SHA-256 {actual}, not the published {archive.sha256} of {archive.filename} (a "
                    "repacked copy?); using it: its videos and ground truth are checked against the published "
                    "figures below"), stacklevel=2)
        index = index_archive(path, archive)
        check_free_space(staging, index.take_bytes, f"extracting {path.name}")
        say(f"{source.name}: extracting {', '.join(archive.take)} from {path.name}")
        with atomic_dir(folder) as partial:
            extract(index, partial)
            (partial / _TOP_FILE).write_text(index.top)
            made_from = _made_from(staging)
            made_from[archive.role] = {**fingerprint(path), "published": is_published}
            write_json(staging / _MADE_FROM, made_from)
    return folder / (folder / _TOP_FILE).read_text()


def _made_from(staging: Path) -> dict[str, dict]:
    """role -> the fingerprint of the archive file its extracted/<role>/ came from ({} when none is recorded)."""
    try:
        record = json.loads((staging / _MADE_FROM).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {role: entry for role, entry in record.items() if isinstance(entry, dict) and "file" in entry}


def _discard_if_made_from_others(source: DatasetSource, archives: dict[str, Path], staging: Path, published: bool,
                                 say: Say) -> None:
    """Delete an earlier run's staging folder unless each archive it was extracted from is the file
    given now (size and ends, utils.datasets.archives.fingerprint); where `fetch` has deleted its
    download already, the published archive is taken for itself. Without this, a rerun with
    another archive would publish the first archive's videos."""
    started = [a for a in source.archives if (staging / "extracted" / a.role).is_dir()
               or (staging / "dataset").is_dir()]
    made_from = _made_from(staging)
    for archive in started:
        recorded, path = made_from.get(archive.role), archives.get(archive.role)
        if recorded is None:
            same = False
        elif path is not None and path.is_file():
            now = fingerprint(path)
            same = (now["bytes"], now["ends_sha256"]) == (recorded.get("bytes"), recorded.get("ends_sha256"))
        else:
            same = published and bool(recorded.get("published"))
        if not same:
            earlier = (f"another file ({recorded['file']}, {recorded.get('bytes', 0):,} bytes)" if recorded else
                       "archives this command did not record")
            say(f"{source.name}: {staging} was made from {earlier}, not from {path or archive.filename}: "
                "discarding it and starting over")
            shutil.rmtree(staging)
            return


def _publish(dataset: Path, target: Path) -> None:
    """dataset/ becomes `target` in one rename; into an existing `target` (holding, say, the
    reference's box files) entry by entry, prepared.json last."""
    if not target.exists():
        os.rename(dataset, target)
        return
    for entry in sorted(dataset.iterdir(), key=lambda p: p.name == PREPARED_FILE):
        if (target / entry.name).exists():
            raise VECError(f"{target / entry.name} is in the way of the prepared {entry.name}; move it away and "
                           "run the command again")
        os.rename(entry, target / entry.name)
    dataset.rmdir()


# ----------------------------------------------------------------------------- conversion

def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise VECError(f"the archive holds no {path.name}/ folder where it should be ({path}); a damaged or "
                       "repacked copy: use the official archive")
    return path


def _drop_hidden(folder: Path) -> None:
    """A Mac's `._*` and `.DS_Store` files are not frames (the reference's glob skips them too)."""
    for path in sorted(folder.rglob(".*"), reverse=True):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def sortable_frame_names(folder: Path) -> None:
    """Rename a video's frames `<number>.<ext>` to one zero-padded width when sorting them by name
    (as the layouts do) would not put them in number order; the files are not rewritten."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    numbers = {p: int(re.findall(r"\d+", p.stem)[-1]) for p in files if re.search(r"\d", p.stem)}
    if len(numbers) != len(files) or len(set(numbers.values())) != len(files):
        return  # not one number per frame: left as the archive has them
    if sorted(files, key=lambda p: p.name) == sorted(files, key=numbers.get):
        return
    width = len(str(max(numbers.values())))
    for path, number in numbers.items():
        path.rename(path.with_name(f"{number:0{width}d}{path.suffix}"))


def _move(source: Path, destination: Path, frame_folders: bool = False) -> None:
    """Move a folder out of the extracted archive (one rename), without hidden files; done by an
    earlier run when `destination` exists."""
    if destination.exists():
        return
    _drop_hidden(_folder(source))
    if frame_folders:
        for video in (p for p in source.iterdir() if p.is_dir()):
            sortable_frame_names(video)
    make_dirs(destination.parent)
    os.rename(source, destination)


def _videos_in(folder: Path) -> list[Path]:
    return sorted((p for p in _folder(folder).iterdir()
                   if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")), key=lambda p: p.name)


class _Decoder:
    """Video files -> one folder of lossless PNG frames each, `<frame number>.png` zero-padded, several
    videos at a time (OpenCV decodes and encodes outside the GIL)."""

    def __init__(self, jobs: int, progress: bool, say: Say) -> None:
        self.jobs, self.progress, self.say = jobs, progress, say

    def __call__(self, videos: list[Path], out_dir: Path, width: int, label: str) -> None:
        make_dirs(out_dir)
        for stale in out_dir.glob("*.partial"):  # left by a killed run; atomic_dir would remove it too
            shutil.rmtree(stale)
        todo = [video for video in videos if not (out_dir / video.stem).is_dir()]
        if not todo:
            return
        sizes = [_frame_estimate(video) for video in todo]
        check_free_space(out_dir, int(sum(n * h * w * 3 for n, h, w in sizes) * PNG_SHARE),
                         f"the frames of {len(todo)} {label} videos")
        bar = tqdm(total=sum(n for n, _, _ in sizes) or None, desc=f"frames ({label})", unit="frame",
                   disable=None if self.progress else True)
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = {pool.submit(_decode, video, out_dir / video.stem, width, bar): video for video in todo}
            for future in as_completed(futures):
                self.say(f"{label}: {futures[future].name} -> {future.result():,} frames")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()


def _frame_estimate(video: Path) -> tuple[int, int, int]:
    """(frames, height, width) as the container states them (for the free-space check)."""
    declared = declared_properties(video, cannot_open=f"OpenCV cannot open {video} (a damaged archive?); "
                                   "download the archive again")
    return declared.frames or 0, declared.height, declared.width


def _decode(video: Path, target: Path, width: int, bar: tqdm) -> int:
    # _frame_estimate opened it: one that no longer opens gives no frames, which is an error below.
    with atomic_dir(target) as partial, VideoFile(video, must_open=False) as clip:
        count = 0
        for frame in clip.frames():
            path = partial / f"{count:0{width}d}.png"
            try:
                written = cv2.imwrite(str(path), frame)
            except cv2.error:
                written = False
            if not written:
                raise VECError(f"cannot write {path} (is the disk full?); free some space and run the "
                               "command again to continue")
            count += 1
            bar.update(1)
        if count == 0:
            raise VECError(f"OpenCV decodes no frame of {video} (a damaged archive?); download the archive again")
        if count > 10**width:  # more frames than the width holds: widen every name so they sort
            wider = len(str(count - 1))
            for path in partial.glob("*.png"):
                path.rename(path.with_name(f"{int(path.stem):0{wider}d}.png"))
    return count


def _convert_ucsd(parts: dict[str, Path], dataset: Path, decode: _Decoder) -> None:
    ped2 = _folder(parts["dataset"] / "UCSDped2")
    for split in ("Train", "Test"):
        _move(ped2 / split, dataset / split, frame_folders=True)


def _convert_avenue(parts: dict[str, Path], dataset: Path, decode: _Decoder) -> None:
    root = parts["dataset"]
    decode(_videos_in(root / "training_videos"), dataset / "training" / "frames", 4, "avenue train")
    decode(_videos_in(root / "testing_videos"), dataset / "testing" / "frames", 4, "avenue test")
    _move(parts["ground_truth"] / "testing_label_mask", dataset / "ground_truth_demo" / "testing_label_mask")


def _convert_shanghaitech(parts: dict[str, Path], dataset: Path, decode: _Decoder) -> None:
    root = parts["dataset"]
    decode(_videos_in(root / "training" / "videos"), dataset / "training" / "videosFrame", 6, "ShanghaiTech train")
    # Every test video in frames_part1: read in name order, as the reference reads its two parts.
    frames = _folder(root / "testing" / "frames")
    for video in sorted(p for p in frames.iterdir() if p.is_dir()):
        sortable_frame_names(video)
        _move(video, dataset / "Testing" / "frames_part1" / video.name)
    make_dirs(dataset / "Testing" / "frames_part1")
    _move(root / "testing" / "test_frame_mask", dataset / "Testing" / "test_frame_mask")
    if (root / "testing" / "test_pixel_mask").is_dir():
        _move(root / "testing" / "test_pixel_mask", dataset / "Testing" / "test_pixel_mask")


_CONVERTERS = {"UCSDped2": _convert_ucsd, "avenue": _convert_avenue, "ShanghaiTech": _convert_shanghaitech}


# ----------------------------------------------------------------------------- verification

def verify_dataset(source: DatasetSource, dataset_dir: Path, say: Say = print) -> dict[str, SplitReport]:
    """Open both splits as the pipeline does and compare them with the published figures.

    Ground truth that does not line up with a test video's frames (count, or mask size) is a
    VECError naming the video; videos missing from or added to the published list are a
    VECWarning naming them, and so are frame totals that differ from the published ones.
    """
    reports = {}
    for split_name in ("train", "test"):
        split = open_split(dataset_dir, source.name, split_name)
        if split_name == "test":
            _check_ground_truth(split)
        figures = source.figures(split_name)
        expected = figures.names or _expected_names(source, split_name, split.video_names, dataset_dir)
        found = set(split.video_names)
        report = SplitReport(split_name, len(split.video_names), len(split), figures.videos, figures.frames,
                             missing=sorted(set(expected) - found),
                             extra=sorted(found - set(expected)) if figures.names else [])
        reports[split_name] = report
        say(report.line(source.name))
        if report.missing:
            warnings.warn(VECWarning(
                f"{source.name} {split_name}: {len(report.missing)} of the published videos are not in the archive: "
                f"{', '.join(report.missing)} (a repacked copy may hold a subset; results will differ from the "
                "paper's)"), stacklevel=2)
        if report.extra:
            warnings.warn(VECWarning(f"{source.name} {split_name}: videos that are not in the published dataset: "
                                     f"{', '.join(report.extra)}"), stacklevel=2)
        if (report.videos, report.frames) != (figures.videos, figures.frames) and not report.missing \
                and not report.extra:
            warnings.warn(VECWarning(
                f"{source.name} {split_name}: {report.videos} videos, {report.frames:,} frames where "
                f"{figures.videos} videos, {figures.frames:,} frames are published"), stacklevel=2)
    say(f"{source.name}: the ground truth lines up with the frames of each of the {reports['test'].videos} "
        "test videos")
    return reports


def _check_ground_truth(split: VideoSplit) -> None:
    """Frame labels exist (their count per video is checked by open_split); each video's pixel
    masks have its frames' size."""
    if split.labels is None:
        raise VECError(f"no ground truth for the test videos in {split.dataset_dir}")
    if not split.has_pixel_masks:
        return
    starts = np.concatenate([[0], np.cumsum(split.video_lengths)[:-1]])
    for name, first in zip(split.video_names, starts):
        frame, mask = split.read_frame(int(first)), split.read_mask(int(first))
        if mask.shape != frame.shape[:2]:
            raise VECError(f"the ground-truth masks of test video {name} are {mask.shape[1]}x{mask.shape[0]} "
                           f"but its frames are {frame.shape[1]}x{frame.shape[0]}")


def _expected_names(source: DatasetSource, split: str, found: list[str], dataset_dir: Path) -> list[str]:
    """Published video names where no list of them is tabulated (ShanghaiTech): the test videos
    that have ground truth, and the training videos numbered 1..N within each scene (`01_001`)."""
    if split == "test":
        return sorted(p.stem for p in (dataset_dir / "Testing" / "test_frame_mask").glob("*.npy"))
    by_scene: dict[str, list[str]] = {}
    for name in found:
        scene, _, number = name.partition("_")
        if number.isdigit():
            by_scene.setdefault(scene, []).append(number)
    expected = []
    for scene, numbers in by_scene.items():
        width = max(len(n) for n in numbers)
        expected += [f"{scene}_{i:0{width}d}" for i in range(1, max(int(n) for n in numbers) + 1)]
    return expected
