"""One file from the web into a folder: resumable, verified, atomic. Weights and dataset archives
both come this way (utils/weights.py, utils/datasets/prepare.py).

    download(url, destination, label=..., manual=..., sha256=..., check=...)

pooch.retrieve runs each download: the file arrives in a temporary file beside its
destination, its SHA-256 is checked when one is published (`sha256`), and only then is it
moved to its final name, so a file under its final name is always complete and verified.
The transfer underneath keeps `<file>.partial` across runs, so an interrupted download
resumes: an HTTP Range request continues it where the server allows that (206) and it
starts over where the server does not (200). Google Drive files go through gdown, which
follows Drive's "can't scan this file for viruses" page and resumes its own partial file.
Free disk space is checked against the announced size before the body is written.

Every failure is one VECError line; a dead link or an offline machine names the manual
steps (`manual`).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from utils.infra.errors import VECError

TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
USER_AGENT = "VEC-download/2 (python requests)"
FREE_SPACE_MARGIN = 1.05


def one_line(value: object) -> str:
    return " ".join(str(value).split())


def partial_path(destination: Path) -> Path:
    """Where the bytes of `destination` gather until the download is complete."""
    destination = Path(destination)
    return destination.with_name(destination.name + ".partial")


def partial_bytes(destination: Path) -> int | None:
    """Bytes already downloaded towards `destination` (ours or gdown's partial file), None when none."""
    partial = partial_path(destination)
    files = [partial] if partial.is_file() else sorted(partial.parent.glob(partial.name + "*.part"))
    return files[0].stat().st_size if files else None


def check_free_space(folder: Path, needed: int, what: str,
                     hint: str = "free some space or choose another folder with --dest") -> None:
    """A one-line error when `needed` bytes (plus a 5 % margin) do not fit on `folder`'s disk."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed * FREE_SPACE_MARGIN > free:
        raise VECError(f"not enough disk space for {what} in {folder}: about {_size(needed)} needed, "
                       f"{_size(free)} free; {hint}")


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def is_google_drive(url: str) -> bool:
    from gdown.parse_url import is_google_drive_url  # gdown (and requests) only when downloading

    return is_google_drive_url(url)


class _Cut(Exception):
    """The transfer stopped early; the partial file is kept for resuming."""


class _Rejected(VECError):
    """The complete file failed the caller's check."""


def _get(url: str, headers: dict, timeout: float):
    """One streamed GET (a seam that tests wrap to assert they stay on 127.0.0.1)."""
    import requests

    return requests.get(url, headers=headers, stream=True, timeout=timeout)


def _content_range(response) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as `bytes 100-199/200` or `bytes */200`."""
    match = re.match(r"\s*bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match:
        return None, None
    first, total = match.groups()
    return (None if first == "*" else int(first)), (None if total == "*" else int(total))


def _write_error(err: OSError, path: Path) -> VECError:
    return VECError(f"cannot write {path} ({one_line(err)}); make room and run the command again to resume")


class _Transfer:
    """A pooch downloader: brings `partial` to the whole file (resuming it), checks it, hands it to pooch."""

    def __init__(self, partial: Path, label: str, check: Callable[[Path], str] | None, progress: bool,
                 timeout: float, say: Callable[[str], None]) -> None:
        self.partial, self.label, self.check = partial, label, check
        self.progress, self.timeout, self.say = progress, timeout, say
        self.resumed = False  # bytes of an earlier run were kept
        self.verified = ""  # what `check` said

    def __call__(self, url: str, output_file: str, pooch) -> None:
        if is_google_drive(url):
            self._from_drive(url)
        else:
            self._over_http(url)
        if self.check is not None:
            try:
                self.verified = self.check(self.partial)
            except VECError as err:
                raise _Rejected(one_line(err)) from None
        os.replace(self.partial, output_file)

    def _over_http(self, url: str) -> None:
        import requests

        offset = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with _get(url, headers, self.timeout) as response:
            if response.status_code == 416 and offset:  # nothing left to send from `offset`: maybe complete
                if _content_range(response)[1] == offset:
                    self.resumed = True
                    return
                self.say(f"{self.label}: the server cannot resume {self.partial.name} from byte {offset:,}; "
                         "starting over")
                self.partial.unlink()
                return self._over_http(url)
            response.raise_for_status()
            if offset and response.status_code == 206:
                first, total = _content_range(response)
                if first != offset:
                    raise VECError(f"{url} resumed {self.partial.name} at byte {first}, not {offset:,} as asked; "
                                   f"delete {self.partial} and run the command again")
                self.say(f"{self.label}: resuming {self.partial.name} from byte {offset:,}")
                self.resumed = True
            else:
                if offset:
                    self.say(f"{self.label}: the server does not resume downloads; starting {self.partial.name} over")
                offset, total = 0, None
            length = response.headers.get("Content-Length", "")
            if total is None and length.isdigit():
                total = offset + int(length)
            if total is not None:
                check_free_space(self.partial.parent, total - offset, f"downloading {self.label}")
            self._receive(response, offset, total, requests.RequestException)

    def _receive(self, response, offset: int, total: int | None, network_errors) -> None:
        try:
            out = open(self.partial, "ab" if offset else "wb")
        except OSError as err:
            raise _write_error(err, self.partial) from None
        received = offset
        # urllib3 drops the bytes of the last read when the body ends before its Content-Length;
        # the length is checked below instead, so every byte that arrived is kept for resuming.
        response.raw.enforce_content_length = False
        blocks = response.iter_content(CHUNK_BYTES)
        with out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label,
                       disable=None if self.progress else True, leave=False) as bar:
            while True:
                try:
                    block = next(blocks, None)
                except (network_errors, OSError) as err:
                    of_total = f" of {total:,}" if total is not None else ""
                    raise _Cut(f"the connection closed after {received:,}{of_total} bytes: "
                               f"{type(err).__name__}") from None
                if block is None:
                    break
                try:
                    out.write(block)
                except OSError as err:
                    raise _write_error(err, self.partial) from None
                received += len(block)
                bar.update(len(block))
        if total is not None and received < total:
            raise _Cut(f"the connection closed after {received:,} of {total:,} bytes")

    def _from_drive(self, url: str) -> None:
        import gdown

        checked = False

        def on_progress(done: int, total: int | None) -> None:
            nonlocal checked
            if not checked and total is not None:
                checked = True
                check_free_space(self.partial.parent, total - done, f"downloading {self.label}")

        if partial_bytes(self.partial.with_suffix("")) is not None or self.partial.exists():
            self.resumed = True
            self.say(f"{self.label}: resuming the earlier partial download")
        try:
            gdown.download(url, output=str(self.partial), quiet=not self.progress, resume=True, timeout=self.timeout,
                           use_cookies=False, progress=on_progress)
        except gdown.exceptions.DownloadError as err:
            raise _Cut(one_line(err)) from None


def download(url: str, destination: Path, *, label: str, manual: str, sha256: str | None = None,
             check: Callable[[Path], str] | None = None, progress: bool = True, timeout: float = TIMEOUT_S,
             say: Callable[[str], None] = print) -> str:
    """Download `url` to `destination` (which must not exist yet); return what was verified.

    `sha256`: the published SHA-256 (hex) of the whole file, checked by pooch; `check(path)`:
    a further check of the complete file (raising VECError, returning what it verified),
    run before the file gets its final name. `manual` is the sentence telling a user how
    to do it by hand ("download … and save it as …"), appended to dead-link and offline
    errors. A file failing a check is deleted; an interrupted transfer keeps
    `<destination>.partial` (or gdown's partial file) for the next call to resume.
    """
    import gdown
    import pooch
    import requests

    destination = Path(destination)
    folder = destination.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VECError(f"cannot create the folder {folder} ({one_line(err)})") from None
    partial = partial_path(destination)
    transfer = _Transfer(partial, label, check, progress, timeout, say)
    host = re.sub(r"^\w+://", "", url).split("/")[0]
    pooch.get_logger().setLevel("WARNING")
    say(f"{label}: downloading {url} -> {destination}")

    def how() -> str:
        return ("after resuming an earlier partial download; the partial file was deleted, run the command again "
                "to download it from scratch") if transfer.resumed else "the download was deleted"

    try:
        pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=destination.name, path=folder,
                       downloader=transfer, progressbar=False)
    except _Rejected as err:
        partial.unlink(missing_ok=True)
        raise VECError(f"{err} ({how()}); {manual}") from None
    except _Cut as cut:
        where = partial if partial.exists() else "partial file"
        raise VECError(f"download of {destination.name} from {url} was interrupted ({cut}); the {where} is kept: "
                       "run the command again to resume") from None
    except ValueError as err:  # pooch: the SHA-256 differs (it deleted the file)
        got = re.search(r"got ([0-9a-fA-F]{64})", str(err))
        raise VECError(f"checksum mismatch for {destination.name}: expected SHA-256 {sha256}, got "
                       f"{got.group(1) if got else '(see: ' + one_line(err) + ')'} ({how()}); {manual}") from None
    except requests.HTTPError as err:
        response = err.response
        code = f"HTTP {response.status_code} {response.reason}" if response is not None else one_line(err)
        raise VECError(f"{url} answered {code}: the link may be dead; {manual}") from None
    except gdown.exceptions.FileURLRetrievalError:
        raise VECError(f"{url} served a web page instead of {destination.name} (a download quota, a sign-in or a "
                       f"changed link); {manual}") from None
    except (requests.ConnectionError, requests.Timeout) as err:
        raise VECError(f"cannot reach {host} ({type(err).__name__}): offline? {manual}") from None
    except requests.RequestException as err:  # a URL requests cannot open, too many redirects ...
        raise VECError(f"cannot download {url} ({type(err).__name__}: {one_line(err)}); {manual}") from None
    return transfer.verified
