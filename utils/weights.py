"""Download the official pretrained weights into the folders the code reads them from.

    python -m utils.weights list
    python -m utils.weights fetch [flownet2|cascade_rcnn|raft|all] [--dest DIR] [--url URL | --mirror URL]

Each file is downloaded from its original address into `<file>.partial`, verified, and only
then renamed to its final name, so a file under its final name is always complete. An
interrupted download resumes with an HTTP Range request where the server allows it (206)
and starts over where it does not (200). Cascade R-CNN and RAFT are checked against the
SHA-256 prefix in their file names (as torch.hub's `check_hash` does). The FlowNet2 authors
publish no checksum: that file is checked by its size (at least the 650,075,336 bytes of
its float32 weights) and by loading it as FlowNet2 with every key present (strict).

`--mirror URL` (or the environment variable VEC_WEIGHTS_MIRROR) downloads `URL/<file name>`
instead of the original address; `--url URL` gives the full address of one file.
"""
from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from utils.errors import VECError
from utils.io import sha256_file

REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ENV = "VEC_WEIGHTS_MIRROR"
TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
USER_AGENT = "VEC-weights/1 (python urllib)"


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable file and how to tell that it arrived intact.

    `folder` is relative to the repository root. Verification uses whichever of
    `sha256_prefix`, `size` (exact byte count), `min_size` (lower bound) and `check`
    (a function raising VECError) are set. `page` is the address a person opens to
    download it by hand, when that differs from `url`.
    """

    name: str
    url: str
    filename: str
    folder: str
    sha256_prefix: str | None = None
    size: int | None = None
    min_size: int | None = None
    check: Callable[[Path], None] | None = None
    check_label: str = ""
    page: str | None = None

    @property
    def manual_url(self) -> str:
        return self.page or self.url

    def default_dir(self) -> Path:
        return REPO_ROOT / self.folder


def _loads_as_flownet2(path: Path) -> None:
    from utils.flow.flownet2 import load_flownet2  # torch only when a FlowNet2 file is checked

    try:
        load_flownet2(path)
    except VECError as err:
        raise VECError(f"it does not load as a FlowNet2 checkpoint ({_one_line(err)})") from None
    except Exception as err:  # a truncated or foreign file fails inside torch.load in many ways
        raise VECError(f"it does not load as a FlowNet2 checkpoint ({type(err).__name__}: {_one_line(err)})") from None


FLOWNET2_DRIVE_ID = "1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da"
FLOWNET2_PARAMETERS = 162_518_834  # float32 numbers in FlowNet2's state dict

WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec for spec in (
        WeightSpec(
            name="flownet2",
            url=f"https://drive.google.com/uc?export=download&id={FLOWNET2_DRIVE_ID}",
            page=f"https://drive.google.com/file/d/{FLOWNET2_DRIVE_ID}/view?usp=sharing",
            filename="FlowNet2_checkpoint.pth.tar",
            folder="FlowNet2_src/pretrained",
            min_size=4 * FLOWNET2_PARAMETERS,
            check=_loads_as_flownet2,
            check_label="loads as FlowNet2 with every weight present (strict key check)",
        ),
        WeightSpec(
            name="cascade_rcnn",
            url=("https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_rcnn_r101_fpn_1x_coco/"
                 "cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth"),
            filename="cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth",
            folder="obj_det_checkpoints",
            sha256_prefix="0b6a2fbf",
        ),
        WeightSpec(
            name="raft",
            url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            folder="FlowNet2_src/pretrained",
            sha256_prefix="ff5fadd5",
        ),
    )
}


def fetch_hint(name: str) -> str:
    """What to tell a user whose `name` weights are missing, e.g. in a "checkpoint not found" error."""
    if name not in WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    return f"run `python -m utils.weights fetch {name}`"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _manual_steps(spec: WeightSpec, destination: Path) -> str:
    return f"download {spec.manual_url} by hand and save it as {destination}"


def verify(spec: WeightSpec, path: Path) -> str:
    """Check `path` against `spec`; return what was verified, or raise VECError naming the file."""
    size = Path(path).stat().st_size
    if spec.size is not None and size != spec.size:
        raise VECError(f"{spec.filename} has {size:,} bytes, expected {spec.size:,}")
    if spec.min_size is not None and size < spec.min_size:
        raise VECError(f"{spec.filename} has {size:,} bytes, expected at least {spec.min_size:,}")
    done = []
    if spec.sha256_prefix is not None:
        actual = sha256_file(path)
        if not actual.startswith(spec.sha256_prefix):
            raise VECError(f"checksum mismatch for {spec.filename}: expected a SHA-256 starting with "
                           f"{spec.sha256_prefix}, got {actual[:len(spec.sha256_prefix)]} (full: {actual})")
        done.append(f"SHA-256 {spec.sha256_prefix}… verified")
    else:
        done.append("no checksum is published for it, so it is NOT verified by checksum")
    if spec.size is not None:
        done.append(f"size {spec.size:,} bytes verified")
    elif spec.min_size is not None:
        done.append(f"size {size:,} bytes (at least {spec.min_size:,}) verified")
    if spec.check is not None:
        try:
            spec.check(Path(path))
        except VECError as err:
            raise VECError(f"{spec.filename}: {_one_line(err)}") from None
        done.append(f"verified: {spec.check_label or 'content check passed'}")
    return "; ".join(done)


# ----------------------------------------------------------------------------- Google Drive's confirmation page

class _PageLinks(HTMLParser):
    """Forms (action and hidden inputs) and link targets of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self._form: tuple[str, dict[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._form = (values.get("action", ""), {})
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and values.get("name"):
            if values.get("type", "text").lower() in ("hidden", "submit", "text"):
                self._form[1][values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def confirmation_url(page: str, page_url: str, cookies: http.cookiejar.CookieJar | None = None) -> str | None:
    """Where Google Drive's "can't scan this file for viruses" page sends you to get the file, if anywhere.

    Tried in order: a form carrying a `confirm` field (the current page: `download-form`,
    action drive.usercontent.google.com/download, hidden id/export/confirm/uuid), a link
    with `confirm=` in it (older pages), a `confirm=` token anywhere in the page, and a
    `download_warning…` cookie (the oldest scheme), the last two added to the page's URL.
    """
    parser = _PageLinks()
    try:
        parser.feed(page)
    except Exception:  # a page HTMLParser cannot read: fall through to the regular expressions
        pass
    for action, fields in parser.forms:
        if "confirm" in fields:
            target = urllib.parse.urljoin(page_url, action or page_url)
            return f"{target.split('?')[0]}?{urllib.parse.urlencode(fields)}"
    for href in parser.links:
        if "confirm=" in href:
            return urllib.parse.urljoin(page_url, href)
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        return _with_query(page_url, confirm=token.group(1))
    for cookie in cookies or ():
        if cookie.name.startswith("download_warning"):
            return _with_query(page_url, confirm=cookie.value)
    return None


# ----------------------------------------------------------------------------- downloading

class _Cut(Exception):
    """The transfer stopped early; the partial file is kept for resuming."""


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return opener.open(request, timeout=timeout)


def _content_range(response) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header such as `bytes 100-199/200` or `bytes */200`."""
    match = re.match(r"\s*bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match:
        return None, None
    first, total = match.groups()
    return (None if first == "*" else int(first)), (None if total == "*" else int(total))


def _transfer(spec: WeightSpec, url: str, destination: Path, partial: Path, progress: bool, timeout: float,
              say: Callable[[str], None]) -> bool:
    """Bring `partial` to the full file, resuming from its current length where the server allows it.

    Returns whether bytes from an earlier attempt were kept (resumed) rather than downloaded anew.
    """
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = _open(opener, url, offset, timeout)
        for _ in range(3):  # a page in front of the file (Google Drive's confirmation) is followed, a few at most
            if not response.headers.get("Content-Type", "").lower().startswith("text/html"):
                break
            page_url = response.geturl()
            page = response.read(4 << 20).decode("utf-8", "replace")
            response.close()
            next_url = confirmation_url(page, page_url, cookies)
            if next_url is None:
                raise VECError(f"{url} served a web page instead of {spec.filename} (a download quota, a sign-in "
                               f"or a changed link); {_manual_steps(spec, destination)}")
            response = _open(opener, next_url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send from `offset`: maybe already complete
            _, total = _content_range(err)
            err.close()
            if total == offset:
                return True
            say(f"{spec.name}: the server cannot resume {partial.name} from byte {offset:,}; starting over")
            partial.unlink()
            return _transfer(spec, url, destination, partial, progress, timeout, say)
        raise
    with response:
        if offset and response.status == 206:
            first, total = _content_range(response)
            if first != offset:
                raise VECError(f"{url} resumed {spec.filename} at byte {first}, not {offset:,} as asked; "
                               f"delete {partial} and run the command again")
            say(f"{spec.name}: resuming {partial.name} from byte {offset:,}")
            resumed = True
        else:
            if offset:
                say(f"{spec.name}: the server does not resume downloads; starting {partial.name} over")
            offset, total, resumed = 0, None, False
        length = response.headers.get("Content-Length")
        if total is None and length is not None and length.isdigit():
            total = offset + int(length)
        received = offset
        try:
            out = open(partial, "ab" if offset else "wb")
        except OSError as err:
            raise VECError(f"cannot write {partial} ({_one_line(err)})") from None
        with out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=spec.name,
                       disable=None if progress else True, leave=False) as bar:
            while True:
                try:
                    block = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as err:
                    raise _Cut(f"{type(err).__name__}: {_one_line(err) or 'connection lost'}") from None
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as err:
                    raise VECError(f"cannot write {partial} ({_one_line(err)}); make room and run the command "
                                   "again to resume") from None
                received += len(block)
                bar.update(len(block))
        if total is not None and received < total:
            raise _Cut(f"the connection closed after {received:,} of {total:,} bytes")
    return resumed


def fetch(spec: WeightSpec, dest_dir: str | Path | None = None, *, url: str | None = None, progress: bool = True,
          timeout: float = TIMEOUT_S, say: Callable[[str], None] = print) -> Path:
    """Download `spec` into `dest_dir` (default: its folder in the repository), verify it, return its path.

    A file already at the destination is verified and kept (no request made); a file there
    that fails verification is an error (it is not overwritten). Every failure is a one-line
    VECError; an interrupted transfer keeps `<file>.partial` so the next call resumes it.
    """
    folder = Path(dest_dir) if dest_dir is not None else spec.default_dir()
    destination = folder / spec.filename
    partial = folder / (spec.filename + ".partial")
    url = url or spec.url
    if destination.is_file():
        try:
            what = verify(spec, destination)
        except VECError as err:
            raise VECError(f"{destination} is already there but fails verification ({_one_line(err)}); "
                           "delete it and run the command again") from None
        say(f"{spec.name}: {destination} is already present and verified, skipped ({what})")
        return destination
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VECError(f"cannot create the folder {folder} ({_one_line(err)})") from None
    say(f"{spec.name}: downloading {url} -> {destination}")
    try:
        resumed = _transfer(spec, url, destination, partial, progress, timeout, say)
    except _Cut as cut:
        raise VECError(f"download of {spec.filename} from {url} was interrupted ({cut}); the partial file "
                       f"{partial} is kept: run the command again to resume") from None
    except urllib.error.HTTPError as err:
        err.close()
        raise VECError(f"{url} answered HTTP {err.code} {_one_line(err.reason)}: the link may be dead; "
                       f"{_manual_steps(spec, destination)}") from None
    except urllib.error.URLError as err:
        raise VECError(f"cannot reach {urllib.parse.urlsplit(url).netloc} ({_one_line(err.reason)}): offline? "
                       f"{_manual_steps(spec, destination)}") from None
    except ValueError as err:  # not a URL urllib can open
        raise VECError(f"cannot download {url} ({_one_line(err)}); {_manual_steps(spec, destination)}") from None
    except (OSError, http.client.HTTPException) as err:  # a timeout or reset before the first byte
        raise VECError(f"cannot download from {urllib.parse.urlsplit(url).netloc} ({type(err).__name__}: "
                       f"{_one_line(err) or 'no answer'}): offline? {_manual_steps(spec, destination)}") from None
    try:
        what = verify(spec, partial)
    except VECError as err:
        partial.unlink(missing_ok=True)
        how = ("after resuming an earlier partial download; the partial file was deleted, run the command "
               "again to download it from scratch") if resumed else "the download was deleted"
        raise VECError(f"{_one_line(err)} ({how}); {_manual_steps(spec, destination)}") from None
    os.replace(partial, destination)
    say(f"{spec.name}: saved {destination} ({what})")
    return destination


def status(spec: WeightSpec, dest_dir: str | Path | None = None) -> str:
    """`missing`, `partial download (N bytes)`, `present, verified (...)` or `present, FAILS verification (...)`."""
    folder = Path(dest_dir) if dest_dir is not None else spec.default_dir()
    destination, partial = folder / spec.filename, folder / (spec.filename + ".partial")
    if not destination.is_file():
        return f"partial download ({partial.stat().st_size:,} bytes)" if partial.is_file() else "missing"
    try:
        return f"present, verified ({verify(spec, destination)})"
    except VECError as err:
        return f"present, FAILS verification ({_one_line(err)})"


# ----------------------------------------------------------------------------- command line

def _source(spec: WeightSpec, url: str | None, mirror: str | None) -> str:
    if url:
        return url
    if mirror:
        return f"{mirror.rstrip('/')}/{spec.filename}"
    return spec.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    names = [*WEIGHTS, "all"]
    listing = commands.add_parser("list", help="each weight file: destination, source, present and verified")
    getting = commands.add_parser("fetch", help="download weight files (default: all)")
    getting.add_argument("name", nargs="?", default="all", choices=names)
    getting.add_argument("--url", help="full address to download the one named file from")
    getting.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds without data before giving up")
    getting.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown on terminals only)")
    for sub in (listing, getting):
        sub.add_argument("--dest", type=Path, metavar="DIR",
                         help="put the files in DIR instead of their folders in the repository")
        sub.add_argument("--mirror", metavar="URL", default=os.environ.get(MIRROR_ENV) or None,
                         help=f"download URL/<file name> instead of the original address (default: ${MIRROR_ENV})")
    args = parser.parse_args(argv)

    if args.command == "list":
        for spec in WEIGHTS.values():
            folder = args.dest if args.dest is not None else spec.default_dir()
            by_hand = f"\n  by hand: {spec.page}" if spec.page else ""
            print(f"{spec.name}: {folder / spec.filename}\n  source: {_source(spec, None, args.mirror)}{by_hand}"
                  f"\n  status: {status(spec, args.dest)}")
        return 0

    chosen = list(WEIGHTS.values()) if args.name == "all" else [WEIGHTS[args.name]]
    if args.url and len(chosen) != 1:
        print("error: --url gives the address of one file: name the weights to fetch "
              f"({', '.join(WEIGHTS)})", file=sys.stderr)
        return 2
    failed = False
    for spec in chosen:
        try:
            fetch(spec, args.dest, url=_source(spec, args.url, args.mirror), progress=not args.no_progress,
                  timeout=args.timeout)
        except VECError as err:
            print(f"error: {_one_line(err)}", file=sys.stderr)
            failed = True
        except KeyboardInterrupt:
            folder = args.dest if args.dest is not None else spec.default_dir()
            print(f"interrupted: the partial download {folder / spec.filename}.partial is kept, rerun to resume",
                  file=sys.stderr)
            return 130
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
