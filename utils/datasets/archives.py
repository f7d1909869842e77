"""An archive file on disk: which official archive it is, where the wanted folders sit in it, and
extracting only those (pooch's Untar / Unzip).

The official archives put everything below one top folder (`UCSD_Anomaly_Dataset.v1p2/`,
`Avenue Dataset/`, `shanghaitech/`); a repacked copy may call it something else or have
none, so the top folder is found from a folder every copy holds (`Archive.marker`).

A damaged archive is a one-line error before anything is published: a .tar.gz is read to
its end when it is listed, so gzip checks the CRC-32 of everything it holds (reading the
tar's members alone stops before it); zipfile checks the CRC-32 of each member extracted.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from utils.datasets.sources import Archive, DatasetSource
from utils.infra.errors import VECError


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    safe: bool  # a plain file or folder whose path stays inside the extraction folder


@dataclass(frozen=True)
class ArchiveIndex:
    """Where `archive`'s wanted folders are inside the file at `path`, and their size."""

    path: Path
    archive: Archive
    top: str  # the top folder, with its trailing "/" ("" when there is none)
    take_bytes: int  # bytes of the files below the wanted folders

    @property
    def members(self) -> list[str]:
        """The wanted folders as archive member names (what pooch extracts)."""
        return [self.top + folder for folder in self.archive.take]


_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


def list_members(path: Path) -> list[Member]:
    """Every member of a .zip or .tar(.gz) file; a file that is neither, or a compressed tar whose
    data fails its check (gzip's CRC-32), is a one-line error."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return [Member(info.filename, info.file_size, _safe_name(info.filename)) for info in archive.infolist()]
        archive = tarfile.open(path)
    except _READ_ERRORS as err:
        raise VECError(f"{path} cannot be read as a .zip or .tar.gz archive ({_reason(err)}); download it again") \
            from None
    try:
        with archive:
            members = [Member(info.name, info.size, (info.isfile() or info.isdir()) and _safe_name(info.name))
                       for info in archive.getmembers()]
            # The tar ends before the compressed stream does: reading on to its end makes gzip (bz2, xz)
            # compare the CRC of all it decompressed, which reading the members alone never does.
            while archive.fileobj.read(1 << 20):
                pass
    except _READ_ERRORS as err:
        raise VECError(f"{path} is damaged ({_reason(err)}); download it again") from None
    return members


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not name.startswith("/") and ".." not in parts


def find_top(names: list[str], marker: str) -> str | None:
    """The shortest prefix after which `marker` starts a path in one of `names` ("" for the archive's root)."""
    needle = "/" + marker.strip("/") + "/"
    tops = []
    for name in names:
        padded = "/" + name.rstrip("/") + "/"
        at = padded.find(needle)
        if at >= 0:
            tops.append(padded[1:at + 1])
    return min(tops, key=len) if tops else None


def index_archive(path: Path, archive: Archive, members: list[Member] | None = None) -> ArchiveIndex:
    """Find `archive`'s folders in the file at `path`; an error when it is not that archive or is unsafe."""
    members = list_members(path) if members is None else members
    top = find_top([m.name for m in members], archive.marker)
    if top is None:
        raise VECError(f"{path} is not {archive.filename}: it holds no {archive.marker}/ folder; "
                       f"download the official archive from {archive.page}")
    # the members pooch extracts for these folder names (its own rule: the normalised name starts with one)
    wanted = [os.path.normpath(top + folder) for folder in archive.take]
    chosen = [m for m in members if any(os.path.normpath(m.name).startswith(w) for w in wanted)]
    unsafe = [m.name for m in chosen if not m.safe]
    if unsafe:
        raise VECError(f"{path} holds {unsafe[0]!r}, a link or a path leading out of the folder it is extracted "
                       f"to; it is not extracted: use the official {archive.filename}")
    return ArchiveIndex(Path(path), archive, top, sum(m.size for m in chosen))


def identify(paths: list[Path], source: DatasetSource) -> dict[str, Path]:
    """Which of the user's archive files is which of `source`'s archives (role -> file), told apart
    by what they hold, not by their names; a missing archive, or a file that is none of them, is a
    one-line error. A dataset of one archive takes the one file as it is (it is checked when
    extracted, so a large .tar.gz is read once less)."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise VECError(f"archive {path} not found")
    if len(source.archives) == 1 and len(paths) == 1:
        return {source.archives[0].role: paths[0]}
    found: dict[str, Path] = {}
    for path in paths:
        names = [m.name for m in list_members(path)]
        role = next((a.role for a in source.archives if a.role not in found and find_top(names, a.marker) is not None),
                    None)
        if role is None:
            files = " or ".join(a.filename for a in source.archives)
            raise VECError(f"{path} is none of {source.name}'s archives ({files}), or the same one twice")
        found[role] = path
    missing = [a for a in source.archives if a.role not in found]
    if missing:
        raise VECError(f"{source.name} needs {' and '.join(a.filename for a in source.archives)}; "
                       f"{', '.join(a.filename for a in missing)} is missing: download it from {missing[0].page} "
                       "and name it with --archive too")
    return found


def extract(index: ArchiveIndex, folder: Path) -> None:
    """Extract the wanted folders of `index` into `folder` (below their top folder, as in the archive)."""
    import pooch

    pooch.get_logger().setLevel("WARNING")
    is_zip = zipfile.is_zipfile(index.path)
    extractor = pooch.Unzip if is_zip else pooch.Untar
    try:
        # action "download" makes pooch extract even where some of the files are already there
        extractor(members=index.members, extract_dir=str(Path(folder).absolute()))(str(index.path), "download", None)
    except _READ_ERRORS as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # writing failed (a full disk): not the archive's fault
        damaged = _damaged_member(index) if is_zip else None
        where = f"its member {damaged!r} is damaged" if damaged else "it is damaged"
        raise VECError(f"{index.path}: {where} ({_reason(err)}); download {index.path.name} again") from None


def _damaged_member(index: ArchiveIndex) -> str | None:
    """The first of the extracted members whose data zipfile cannot read back or whose CRC-32 differs."""
    wanted = [os.path.normpath(name) for name in index.members]
    with zipfile.ZipFile(index.path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not any(os.path.normpath(info.filename).startswith(w) for w in wanted):
                continue
            try:
                with archive.open(info) as member:
                    while member.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, zlib.error, EOFError):
                return info.filename
    return None


def fingerprint(path: Path, end_bytes: int = 1 << 20) -> dict:
    """A cheap identity of an archive file: its size and the SHA-256 of its first and last MiB.

    Both formats end with a checksum of all they hold (a zip's central directory lists every
    member's CRC-32 and size; gzip's trailer is the CRC-32 and length of the whole tar), so
    another archive differs there, at the cost of reading 2 MiB instead of gigabytes."""
    digest = hashlib.sha256()
    size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        digest.update(handle.read(end_bytes))
        handle.seek(max(0, size - end_bytes))
        digest.update(handle.read(end_bytes))
    return {"file": Path(path).name, "bytes": size, "ends_sha256": digest.hexdigest()}
