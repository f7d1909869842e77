"""A setting's text read as its key's type (`convert`): a choice, a boolean, a number in its range, a path.
A text that is none of these is a one-line error naming where it was written."""
from __future__ import annotations

import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from utils.config.overrides import Setting
from utils.config.schema import KeySpec, eval_number
from utils.infra.errors import VECError


def convert(setting: Setting, spec: KeySpec, resolve: Callable[[Path], Path]) -> object:
    """The value of `setting` as type `spec.kind`, in the range `spec.metadata` gives; a one-line error naming
    where it was written otherwise. `resolve` makes a relative path absolute."""
    text = setting.text.strip()
    kind, metadata = spec.kind, spec.metadata
    hint = f" ({metadata['hint']})" if "hint" in metadata else ""

    def fail(allowed: str) -> VECError:
        return VECError(f"{setting.where} = {text!r} is not {allowed}{hint}")

    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        for choice in choices:
            if text == str(choice):
                return choice
        raise fail("one of " + ", ".join(str(c) for c in choices))
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise fail("a boolean (use True or False)")
    if kind in (int, float):
        try:
            number = eval_number(text)
        except ValueError:
            raise fail("an integer" if kind is int else "a number") from None
        if kind is int and not number.is_integer():  # nan and inf are not integers either
            raise fail("an integer")
        if not math.isfinite(number):
            raise fail("a finite number")
        value = int(number) if kind is int else number
        minimum, maximum = metadata.get("min"), metadata.get("max")
        if ((minimum is not None and (value < minimum or (metadata.get("exclusive") and value == minimum)))
                or (maximum is not None and value > maximum)):
            raise VECError(f"{setting.where} = {text!r} is out of range: it must be {spec.range}{hint}")
        if metadata.get("odd") and value % 2 == 0:
            raise fail("an odd number")
        if "multiple" in metadata and value % metadata["multiple"]:
            raise fail(f"a multiple of {metadata['multiple']}")
        return value
    if kind in (Path, Path | None):
        if not text:
            if kind is Path:
                raise fail("a path")
            return None
        return resolve(Path(text))
    return text
