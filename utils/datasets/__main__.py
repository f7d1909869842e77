"""UCSDped2, Avenue and ShanghaiTech from their official archives, in the layout the pipeline reads.

    python -m utils.datasets fetch UCSDped2|avenue [--dest DIR] [--mirror URL] [--keep-archives]
    python -m utils.datasets prepare UCSDped2|avenue|ShanghaiTech --archive PATH [PATH ...] [--dest DIR]
    python -m utils.datasets list [--dest DIR]

`fetch` downloads the official archives (resumable; their SHA-256 must be the published
one) and prepares DIR/<name>/ (default DIR: raw_datasets/ in the repository); `prepare`
does the same from archives you already have (the only way for ShanghaiTech), warning when
one is not the published file. Both print the videos and frames per split beside the
published figures. `--mirror URL` (or VEC_DATASETS_MIRROR) downloads URL/<archive name>.
docs/datasets.md says what gets written and how to do it by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from utils.infra.errors import VECError, VECWarning

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
MIRROR_ENV = "VEC_DATASETS_MIRROR"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, VECWarning):
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def _parser() -> argparse.ArgumentParser:
    from utils.datasets.sources import SOURCES
    from utils.infra.download import TIMEOUT_S

    parser = argparse.ArgumentParser(prog="python -m utils.datasets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    names = ", ".join(SOURCES)
    fetching = commands.add_parser("fetch", help="download the official archives and prepare the dataset")
    preparing = commands.add_parser("prepare", help="prepare the dataset from archives you have")
    listing = commands.add_parser("list", help="each dataset: its archives, addresses and whether it is prepared")
    for sub in (fetching, preparing):
        sub.add_argument("name", help=f"the dataset: {names} (any letter case)")
        sub.add_argument("--jobs", type=int, default=None, metavar="N",
                         help="videos decoded at a time (default: the CPU count, at most 8)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars (shown on terminals only)")
    preparing.add_argument("--archive", nargs="+", required=True, type=Path, metavar="PATH",
                           help="the dataset's archive file(s), e.g. Avenue_Dataset.zip ground_truth_demo.zip")
    fetching.add_argument("--mirror", metavar="URL", default=os.environ.get(MIRROR_ENV) or None,
                          help=f"download URL/<archive name> instead of the official address (default: ${MIRROR_ENV})")
    fetching.add_argument("--keep-archives", action="store_true",
                          help="keep the downloaded archives in DIR/downloads/ (deleted once prepared by default)")
    fetching.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds without data before giving up")
    for sub in (fetching, preparing, listing):
        sub.add_argument("--dest", type=Path, default=REPO_ROOT / "raw_datasets", metavar="DIR",
                         help="the raw_datasets folder to prepare DIR/<name>/ in (default: the repository's)")
    return parser


def _list(dest: Path) -> None:
    from utils.datasets.prepare import preparation_status
    from utils.datasets.sources import SOURCES

    for source in SOURCES.values():
        print(f"{source.name}: {dest / source.name}\n  status: {preparation_status(dest, source)}")
        for archive in source.archives:
            where = archive.url or f"no stable address: download it from {archive.page}, then `prepare`"
            print(f"  {archive.filename}: {where}\n    SHA-256 {archive.sha256}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        from utils.datasets.archives import identify
        from utils.datasets.prepare import fetch_dataset, prepare_dataset
        from utils.datasets.sources import SOURCES, find_source

        if args.command == "list":
            _list(args.dest)
            return 0
        try:
            source = find_source(args.name)
        except KeyError:
            raise VECError(f"unknown dataset {args.name!r}; choose one of {', '.join(SOURCES)}") from None
        from tqdm import tqdm

        # lines written above any progress bar, not through it
        options = dict(jobs=args.jobs, progress=not args.no_progress, say=tqdm.write)
        if args.command == "fetch":
            fetch_dataset(source, args.dest, mirror=args.mirror, keep_archives=args.keep_archives,
                          timeout=args.timeout, **options)
        else:
            prepare_dataset(source, identify(args.archive, source), args.dest, **options)
        return 0
    except VECError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what is finished is kept; run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
