"""An archive file on disk: which official archive it is, where the wanted folders sit in it, and
extracting only those (pooch's Untar / Unzip).

The official archives put everything below one top folder (`UCSD_Anomaly_Dataset.v1p2/`,
`Avenue Dataset/`, `shanghaitech/`); a repacked copy may call it something else or have
none, so the top folder is found from a folder every copy holds (`Archive.marker`).
"""
from __future__ import annotations

import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from utils.datasets.sources import Archive, DatasetSource
from utils.errors import VECError


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


def list_members(path: Path) -> list[Member]:
    """Every member of a .zip or .tar(.gz) file; a file that is neither is a one-line error."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return [Member(info.filename, info.file_size, _safe_name(info.filename)) for info in archive.infolist()]
        with tarfile.open(path) as archive:
            return [Member(info.name, info.size, (info.isfile() or info.isdir()) and _safe_name(info.name))
                    for info in archive.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise VECError(f"{path} cannot be read as a .zip or .tar.gz archive ({type(err).__name__}: "
                       f"{' '.join(str(err).split())}); download it again") from None


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
    extractor = pooch.Unzip if zipfile.is_zipfile(index.path) else pooch.Untar
    # action "download" makes pooch extract even where some of the files are already there
    extractor(members=index.members, extract_dir=str(Path(folder).absolute()))(str(index.path), "download", None)
