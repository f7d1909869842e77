"""What the entry scripts share: `--config`, `--set`, and one-line errors with exit status 2.

Started by torchrun, every process joins the process group for the script's duration
(utils/infra/distributed.py); only rank 0 prints (the others print nothing but their errors),
and an error line names the rank it comes from.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Callable

from tqdm import tqdm

from utils.config import RunConfig, load_config
from utils.infra import distributed
from utils.infra.errors import VECError, VECWarning


def run_script(description: str, run: Callable[[RunConfig, argparse.Namespace], None],
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line), load the config and call `run(cfg, args)`.
    Returns the exit status (0, 2 for a `VECError`, 130 for Ctrl-C), so tests can call a script's
    `main(argv)` in-process. A command-line mistake is one `error:` line too (no usage block);
    `--help` still exits through SystemExit."""
    parser = _OneLineErrorParser(description=description)
    parser.add_argument("--config", default="config.cfg", help="INI file with the settings (default: config.cfg)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting of the config file, e.g. --set SelfComplete.epochs=2 "
                             "(repeatable; wins over the file, also over the dataset section's own value)")
    if add_arguments is not None:
        add_arguments(parser)
    previous_show_warning, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        args = parser.parse_args(argv)
        cfg = load_config(args.config, args.overrides)
        with distributed.process_group(cfg.device), distributed.quiet_unless_main():
            run(cfg, args)
        return 0
    except VECError as err:
        _close_progress_bars()  # else a bar left open would be redrawn at exit, after the error line
        print(f"error: {distributed.error_prefix()}{err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted: finished files are kept, rerun to continue", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_show_warning


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are `VECError`s, so they print as the scripts' other errors do."""

    def error(self, message: str):
        raise VECError(f"{message} (see {self.prog} --help)")


_default_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """VECWarning as one line, written around any open progress bar; other warnings as Python shows them."""
    if issubclass(category, VECWarning):
        tqdm.write(f"warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


def _close_progress_bars() -> None:
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def check_number(flag: str, value: float, low: float, high: float = math.inf) -> float:
    """`value` of `flag` as a finite number within [low, high], else a one-line VECError."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        limits = ("" if low == -math.inf and high == math.inf else f" at least {low:g}" if high == math.inf
                  else f" between {low:g} and {high:g}")
        raise VECError(f"{flag} {value} must be a finite number{limits}")
    return value
