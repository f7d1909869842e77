"""Where each setting comes from: the config file, or `--set SECTION.KEY=VALUE` on the command line.

    Setting           one key as written: its spelling, its text, and where (for error lines)
    parse_overrides   `--set` strings → (section, key, value)
    read_settings     the file's settings with the `--set` ones in place of the same keys
    source_section    which section a key is taken from: a `--set` is never overridden by the file
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from utils.config.schema import key_name
from utils.infra.errors import VECError


@dataclass(frozen=True)
class Setting:
    """One key as it was written: its spelling, its text, and where (the file or --set), for error lines."""

    section: str
    key: str
    text: str
    source: str  # the config file's path, or "--set SECTION.KEY"

    @property
    def on_command_line(self) -> bool:
        return self.source.startswith("--set ")

    @property
    def where(self) -> str:
        return self.source if self.on_command_line else f"{self.source}: [{self.section}] {self.key}"


def parse_overrides(assignments: list[str] | None) -> list[tuple[str, str, str]]:
    """`SECTION.KEY=VALUE` strings → (section, key, value); one-line error for a malformed one."""
    parsed = []
    for text in assignments or []:
        name, sep, value = text.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or not section or not key:
            raise VECError(f"--set {text!r} is not SECTION.KEY=VALUE (for example --set SelfComplete.epochs=2)")
        parsed.append((section, key, value.strip()))
    return parsed


def read_settings(parser: configparser.ConfigParser, path: Path,
                  overrides: list[str] | None) -> dict[str, dict[str, Setting]]:
    """section → key name (`key_name`) → its setting; `--set` replaces the file's setting of the
    same key, whatever the case or spelling of either. Section names keep their case."""
    settings: dict[str, dict[str, Setting]] = {}
    for section in parser.sections():
        keys = settings[section] = {}
        for key in parser.options(section):
            name = key_name(key)
            if name in keys:
                raise VECError(f"{path}: [{section}] sets {name} twice ({keys[name].key} and {key}); keep one")
            keys[name] = Setting(section, key, parser.get(section, key), str(path))
    for section, key, value in parse_overrides(overrides):
        settings.setdefault(section, {})[key_name(key)] = Setting(section, key, value, f"--set {section}.{key}")
    return settings


def source_section(settings: dict[str, dict[str, Setting]], key: str, sections: list[str]) -> str | None:
    """The section `key` (a field name) is taken from: the first of `sections` where --set gives it,
    else the first where the file sets it, else None. So `--set SelfComplete.epochs=2` holds for a
    dataset whose section sets epochs in the file, and `--set <dataset>.epochs=3` wins over both."""
    written = [section for section in sections if key in settings.get(section, {})]
    on_command_line = [section for section in written if settings[section][key].on_command_line]
    return (on_command_line or written or [None])[0]
