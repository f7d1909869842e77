"""The pretrained weight files: one table, and `python -m utils.weights` to download them.

    python -m utils.weights list
    python -m utils.weights fetch [NAME ...|all] [--dest DIR] [--url URL | --mirror URL]

NAME: flownet2, cascade_rcnn, raft, or one of the reference authors' released sets
(utils/released.py: vec_<dataset>_<variant> models, boxes_<dataset> box files).

`WEIGHTS` is the one table of weight files: every default path (utils/config/schema.py), address
and checksum in the code comes from it, and each network's file lives in a folder of its
own (FlowNet2_src/pretrained/, obj_det_checkpoints/, raft_checkpoints/).

Downloads go through utils/infra/download.py, as the dataset archives do: resumable, verified
before the file gets its final name, one-line errors. Cascade R-CNN and RAFT are checked
against the SHA-256 prefix in their file names (as torch.hub's `check_hash` does). The
FlowNet2 authors publish no checksum: that file is checked by its size (at least the
650,075,336 bytes of its float32 weights) and by loading it as FlowNet2 with every key
present (strict); it comes from Google Drive, through gdown.

`--mirror URL` (or the environment variable VEC_WEIGHTS_MIRROR) downloads `URL/<file name>`
instead of the original address; `--url URL` gives the full address of one file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from utils.infra.download import TIMEOUT_S, download, one_line, partial_bytes
from utils.infra.errors import VECError
from utils.infra.io import load_state_dict_file, not_a_torch_file, sha256_file, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ENV = "VEC_WEIGHTS_MIRROR"


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

    @property
    def default_path(self) -> Path:
        """Where the code looks for the file by default: relative to the repository root (and
        so, in config.cfg, to the folder of the config file)."""
        return Path(self.folder) / self.filename

    def default_dir(self) -> Path:
        return REPO_ROOT / self.folder


def _loads_as_flownet2(path: Path) -> None:
    """The strict load of utils.flow.flownet2.load_flownet2 (that module reads this table, so it is
    not imported here): every key of FlowNet2's state dict, no other."""
    from FlowNet2_src import FlowNet2  # the network only when a FlowNet2 file is checked

    try:
        state = load_state_dict_file(path, "")
        if state is None:
            raise VECError("no state_dict in it")
        FlowNet2().load_state_dict(state, strict=True)
    except VECError as err:
        raise VECError(f"it does not load as a FlowNet2 checkpoint ({one_line(err)})") from None
    except Exception as err:  # missing keys, or a truncated or foreign file failing inside torch in many ways
        raise VECError(f"it does not load as a FlowNet2 checkpoint ({type(err).__name__}: "
                       f"{one_line(str(err).splitlines()[0] if str(err) else '')})") from None


FLOWNET2_DRIVE_ID = "1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da"
FLOWNET2_PARAMETERS = 162_518_834  # float32 numbers in FlowNet2's state dict

WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec for spec in (
        WeightSpec(
            name="flownet2",
            url=f"https://drive.google.com/uc?export=download&id={FLOWNET2_DRIVE_ID}",
            page=f"https://drive.google.com/file/d/{FLOWNET2_DRIVE_ID}/view?usp=sharing",
            filename="FlowNet2_checkpoint.pth.tar",
            folder="FlowNet2_src/pretrained",  # where the reference reads it
            min_size=4 * FLOWNET2_PARAMETERS,
            check=_loads_as_flownet2,
            check_label="loads as FlowNet2 with every weight present (strict key check)",
        ),
        WeightSpec(
            name="cascade_rcnn",
            url=("https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_rcnn_r101_fpn_1x_coco/"
                 "cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth"),
            filename="cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth",
            folder="obj_det_checkpoints",  # the reference's folder name
            sha256_prefix="0b6a2fbf",
        ),
        WeightSpec(
            name="raft",
            url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            folder="raft_checkpoints",
            sha256_prefix="ff5fadd5",
        ),
    )
}


def fetch_hint(name: str) -> str:
    """The command that downloads the `name` weights."""
    if name not in WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    return f"run `python -m utils.weights fetch {name}`"


def missing_hint(name: str) -> str:
    """What to tell a user whose `name` weights are missing: the command, or the manual steps."""
    spec = WEIGHTS[name]
    return f"{fetch_hint(name)} (or download {spec.filename} from {spec.manual_url} into {spec.folder}/)"


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
            raise VECError(f"{spec.filename}: {one_line(err)}") from None
        done.append(f"verified: {spec.check_label or 'content check passed'}")
    return "; ".join(done)


def fetch(spec: WeightSpec, dest_dir: str | Path | None = None, *, url: str | None = None, progress: bool = True,
          timeout: float = TIMEOUT_S, say: Callable[[str], None] = print) -> Path:
    """Download `spec` into `dest_dir` (default: its folder in the repository), verify it, return its path.

    A file already at the destination is verified and kept (no request made); a file there
    that fails verification is an error (it is not overwritten). Every failure is a one-line
    VECError; an interrupted transfer keeps its partial file so the next call resumes it.
    """
    folder = Path(dest_dir) if dest_dir is not None else spec.default_dir()
    destination = folder / spec.filename
    if destination.is_file():
        try:
            what = verify(spec, destination)
        except VECError as err:
            raise VECError(f"{destination} is already there but fails verification ({one_line(err)}); "
                           "delete it and run the command again") from None
        say(f"{spec.name}: {destination} is already present and verified, skipped ({what})")
        return destination
    what = download(url or spec.url, destination, label=spec.name, manual=_manual_steps(spec, destination),
                    check=lambda path: verify(spec, path), progress=progress, timeout=timeout, say=say)
    say(f"{spec.name}: saved {destination} ({what})")
    return destination


def status(spec: WeightSpec, dest_dir: str | Path | None = None) -> str:
    """`missing`, `partial download (N bytes)`, `present, verified (...)` or `present, FAILS verification (...)`."""
    folder = Path(dest_dir) if dest_dir is not None else spec.default_dir()
    destination = folder / spec.filename
    if not destination.is_file():
        done = partial_bytes(destination)
        return f"partial download ({done:,} bytes)" if done is not None else "missing"
    try:
        return f"present, verified ({verify(spec, destination)})"
    except VECError as err:
        return f"present, FAILS verification ({one_line(err)})"


# ----------------------------------------------------------------------------- before use

def _verified_stamp(path: Path) -> Path:
    """Where a weights file's verification is remembered: `.<file name>.verified` beside it."""
    return path.with_name(f".{path.name}.verified")


def _remembered_as_verified(path: Path, prefix: str) -> bool:
    """True when the stamp beside `path` records its SHA-256 (starting with `prefix`) for the file's
    present size and modification time: the same file, hashed before."""
    try:
        stamp = json.loads(_verified_stamp(path).read_text())
        now = path.stat()
        return (stamp["file"] == path.name and stamp["size"] == now.st_size and stamp["mtime_ns"] == now.st_mtime_ns
                and str(stamp["sha256"]).startswith(prefix))
    except (OSError, ValueError, KeyError, TypeError):  # no stamp, or one that cannot be read: hash again
        return False


def _fetch_into(name: str, folder: Path) -> str:
    """fetch_hint, with `--dest` when the file lives outside its default folder."""
    if folder.resolve() == WEIGHTS[name].default_dir().resolve():
        return fetch_hint(name)
    return f"run `python -m utils.weights fetch {name} --dest {folder}`"


def check_before_use(name: str, path: str | Path) -> None:
    """Refuse, in one line, a `name` weights file that is not what a loader expects; call it before loading.

    A file that is not a torch file at all (the HTML page a refused download saves, a text
    file, an empty file) is named as such. A file under the official name of weights with a
    published checksum (cascade_rcnn, raft) is checked against it: once, the result being
    remembered beside the file (`_verified_stamp`) for its size and modification time, so later
    runs do not hash it again. A file of another name is the user's own and is not checksummed;
    a missing file is left to the loader's own "not found" line.
    """
    spec, path = WEIGHTS[name], Path(path)
    if not path.is_file():
        return
    official = path.name == spec.filename
    again = f"delete it and {_fetch_into(name, path.parent)}" if official else "download it again"
    prefix = spec.sha256_prefix if official else None
    actual = None
    if prefix is not None:
        if _remembered_as_verified(path, prefix):
            return
        before = path.stat()  # taken before hashing: a file changed meanwhile no longer matches the stamp
        actual = sha256_file(path)
        if actual.startswith(prefix):
            try:
                write_json(_verified_stamp(path), {"file": path.name, "size": before.st_size,
                                                   "mtime_ns": before.st_mtime_ns, "sha256": actual})
            except (VECError, OSError):  # a read-only folder: the file is hashed again next time, nothing lost
                pass
            return
    what = not_a_torch_file(path)  # what the file is says more than a checksum that does not match
    if what is not None:
        saved_by = " (what a refused download saves)" if what == "an HTML page" else ""
        raise VECError(f"{path} is {what}{saved_by}, not the {name} weights; {again}")
    if actual is not None:
        raise VECError(f"{path} is not the official {name} weights: its SHA-256 starts with {actual[:len(prefix)]}, "
                       f"expected {prefix}; {again}")


# ----------------------------------------------------------------------------- command line

def _source(spec: WeightSpec, url: str | None, mirror: str | None) -> str:
    if url:
        return url
    if mirror:
        return f"{mirror.rstrip('/')}/{spec.filename}"
    return spec.url


def main(argv: list[str] | None = None) -> int:
    from utils.released import RELEASED, fetch_released, released_status

    parser = argparse.ArgumentParser(prog="python -m utils.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    names = [*WEIGHTS, *RELEASED, "all"]
    listing = commands.add_parser("list", help="each weight file and released set: destination, source, present "
                                               "and verified")
    getting = commands.add_parser("fetch", help="download weight files and released sets (default: all)")
    getting.add_argument("name", nargs="*", default=["all"], choices=names, metavar="NAME",
                         help=f"one or more of: {', '.join(names)}")
    getting.add_argument("--url", help="full address to download the one named weights file from")
    getting.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds without data before giving up")
    getting.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown on terminals only)")
    for sub in (listing, getting):
        sub.add_argument("--dest", type=Path, metavar="DIR",
                         help="put the files in DIR instead of their folders in the repository "
                              "(a released set in DIR/<name>/)")
        sub.add_argument("--mirror", metavar="URL", default=os.environ.get(MIRROR_ENV) or None,
                         help=f"download URL/<file name> instead of the original address, and a released set's "
                              f"files from URL/<commit>/<path in the reference repository> (default: ${MIRROR_ENV})")
    args = parser.parse_args(argv)

    def released_folder(released) -> Path:  # --dest DIR: each set in DIR/<name>/
        return released.default_dir(REPO_ROOT) if args.dest is None else args.dest / released.name

    if args.command == "list":
        for spec in WEIGHTS.values():
            folder = args.dest if args.dest is not None else spec.default_dir()
            by_hand = f"\n  by hand: {spec.page}" if spec.page else ""
            print(f"{spec.name}: {folder / spec.filename}\n  source: {_source(spec, None, args.mirror)}{by_hand}"
                  f"\n  status: {status(spec, args.dest)}")
        for released in RELEASED.values():
            what = (f"the authors' trained model ({released.variant}, AUROC {released.released_auroc:.3f})"
                    if released.kind == "model" else "the authors' box files (Cascade R-CNN + motion)")
            print(f"{released.name}: {released_folder(released)}/ — {released.dataset}, {what}"
                  f"\n  source: {released.url(released.files[0], args.mirror).rsplit('/', 1)[0]}/"
                  f"\n  status: {released_status(released, REPO_ROOT, folder=released_folder(released))}")
        return 0

    chosen = [*WEIGHTS, *RELEASED] if "all" in args.name else list(dict.fromkeys(args.name))
    if args.url and (len(chosen) != 1 or chosen[0] not in WEIGHTS):
        print("error: --url gives the address of one file: name the weights to fetch "
              f"({', '.join(WEIGHTS)})", file=sys.stderr)
        return 2
    failed = False
    for name in chosen:
        try:
            if name in WEIGHTS:
                spec = WEIGHTS[name]
                fetch(spec, args.dest, url=_source(spec, args.url, args.mirror), progress=not args.no_progress,
                      timeout=args.timeout)
            else:
                released = RELEASED[name]
                fetch_released(released, REPO_ROOT, mirror=args.mirror, progress=not args.no_progress,
                               timeout=args.timeout, folder=released_folder(released))
        except VECError as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            failed = True
        except KeyboardInterrupt:
            print(f"interrupted while fetching {name}: partial downloads are kept, rerun to resume", file=sys.stderr)
            return 130
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
