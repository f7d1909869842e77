"""`config.cfg` read and checked into a RunConfig (`load_config`): unknown sections and keys refused,
every value converted where it is written, each field taken from the section that sets it.

    load_config         the file (and `--set`) → RunConfig of the chosen dataset
    _check_names        unknown sections and keys, naming the closest known one
    _Reader             every setting converted; a dataclass read from the sections that set its keys
    _check_precisions   fp16 / bf16 only where the network and the device honour it
"""
from __future__ import annotations

import configparser
import difflib
import typing
from dataclasses import fields
from pathlib import Path

from utils.config.convert import convert
from utils.config.device import resolve_device
from utils.config.overrides import Setting, read_settings, source_section
from utils.config.schema import (ALIASES, BUILTIN_DATASETS, CLOZE, IGNORED_KEYS, SHARED, TEST, TRAIN, ClozeConfig,
                                 DatasetConfig, RunConfig, SharedConfig, key_name, keys_of_section)
from utils.infra.errors import VECError
from utils.infra.precision import check_precision, check_precision_applies


def _closest(word: str, known) -> str:
    by_lowered = {name.lower(): name for name in known}
    match = difflib.get_close_matches(word.lower(), list(by_lowered), n=1, cutoff=0.5)
    return f"; did you mean '{by_lowered[match[0]]}'?" if match else ""


def _is_dataset(section: str, keys: dict[str, Setting]) -> bool:
    return section in BUILTIN_DATASETS or "layout" in keys


def _check_names(settings: dict[str, dict[str, Setting]], path: Path) -> None:
    """Refuse unknown sections and keys, naming the closest known one."""
    fixed = (SHARED, TRAIN, TEST, CLOZE)
    ignored = {key_name(key) for key in IGNORED_KEYS}
    for section, keys in settings.items():
        if section not in fixed and not _is_dataset(section, keys):
            source = next(iter(keys.values())).source if keys else str(path)
            raise VECError(f"{source}: unknown section [{section}]{_closest(section, fixed + BUILTIN_DATASETS)} "
                           "(a section for your own dataset needs a `layout = ...` key)")
        known = set(keys_of_section(section, _is_dataset(section, keys)))
        for name, setting in keys.items():
            if name not in known and name not in ignored:
                raise VECError(f"{setting.source}: unknown key '{setting.key}' in [{section}]"
                               f"{_closest(setting.key, known | set(ALIASES))}")


class _Reader:
    """Every setting converted where it is written (a [SelfComplete] value a dataset section overrides,
    a dataset section that is not the chosen one), so a bad value anywhere is an error; `read` then
    takes each field from the section `source_section` names."""

    def __init__(self, settings: dict[str, dict[str, Setting]], path: Path) -> None:
        self.settings, self.path = settings, path
        self.values: dict[str, dict[str, object]] = {}
        for section, keys in settings.items():
            schema = keys_of_section(section, _is_dataset(section, keys))
            self.values[section] = {name: convert(setting, schema[name], self.resolve)
                                    for name, setting in keys.items() if name in schema}

    def lookup(self, section: str, key: str) -> Setting | None:
        """The setting of `key` (a field name) in `section`, in whatever spelling it was written, or None."""
        return self.settings.get(section, {}).get(key)

    def origin(self, section: str, key: str) -> str:
        setting = self.lookup(section, key)
        return setting.where if setting is not None else f"{self.path}: [{section}] {key}"

    def resolve(self, path: Path) -> Path:
        """Relative paths are relative to the folder holding the config file."""
        path = path.expanduser()
        return path if path.is_absolute() else self.path.resolve().parent / path

    def source_section(self, key: str, sections: list[str]) -> str | None:
        return source_section(self.settings, key, sections)

    def read(self, cls, sections: list[str], **given):
        """An instance of dataclass `cls`; each field from `source_section`, else its default."""
        hints = typing.get_type_hints(cls)
        values = dict(given)
        for f in fields(cls):
            if f.name in values or f.metadata.get("computed"):
                continue
            if f.metadata.get("flattened"):
                values[f.name] = self.read(hints[f.name], sections)
                continue
            section = self.source_section(f.name, sections)
            if section is not None:
                values[f.name] = self.values[section][f.name]
            elif isinstance(f.default, Path):
                values[f.name] = self.resolve(f.default)
        return cls(**values)


def _check_precisions(reader: _Reader, section: str, dataset: DatasetConfig, cloze: ClozeConfig,
                      device: str) -> None:
    """fp16 / bf16 only for the network that honours it, and only where torch.autocast supports it
    (utils.infra.precision.check_precision) on the device the run uses."""
    for key, chooser, network in (("flow_precision", "flow_method", "flownet2"),
                                  ("detector_precision", "detector", "cascade_rcnn")):
        check_precision_applies(getattr(dataset, key), reader.origin(section, key), chooser,
                                getattr(dataset, chooser), network)
    cloze_section = reader.source_section("precision", [section, CLOZE]) or CLOZE
    for where, key, value in ((section, "flow_precision", dataset.flow_precision),
                              (section, "detector_precision", dataset.detector_precision),
                              (cloze_section, "precision", cloze.precision)):
        try:
            check_precision(value, resolve_device(device), key)
        except VECError as err:
            raise VECError(f"{reader.origin(where, key)}: {err}") from None


def load_config(path: str | Path = "config.cfg", overrides: list[str] | None = None) -> RunConfig:
    """Read and check `path`, apply `--set` overrides, and return the settings of the chosen dataset."""
    path = Path(path)
    if not path.is_file():
        raise VECError(f"config file {path} not found; pass --config PATH or run from the repository root")
    # Keys keep their spelling for error lines (the reference writes motionThr); `key_name` matches them.
    # No interpolation: a value is what is written, '%' included.
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    parser.optionxform = str
    try:
        parser.read(path)
    except configparser.Error as err:
        raise VECError(f"{path} is not a valid INI file: {str(err).splitlines()[0]}") from None
    settings = read_settings(parser, path, overrides)
    _check_names(settings, path)

    reader = _Reader(settings, path)
    shared = reader.read(SharedConfig, [SHARED])
    try:
        resolve_device(shared.device)
    except VECError as err:
        raise VECError(f"{reader.origin(SHARED, 'device')}: {err}") from None
    name = shared.dataset_name
    if name not in settings:
        raise VECError(f"{path}: dataset_name = {name} but there is no [{name}] section"
                       f"{_closest(name, [s for s in settings if s not in (SHARED, TRAIN, TEST, CLOZE)])}")
    given = {"name": name}
    if reader.lookup(name, "layout") is None:
        if name not in ("UCSDped2", "avenue", "ShanghaiTech"):
            raise VECError(f"{path}: [{name}] needs `layout = UCSDped2`, `avenue` or `ShanghaiTech` "
                           "(the benchmark whose folder layout the dataset uses)")
        given["layout"] = name
    dataset = reader.read(DatasetConfig, [name], **given)
    cloze = reader.read(ClozeConfig, [name, CLOZE])
    _check_precisions(reader, name, dataset, cloze, shared.device)
    shared_values = {f.name: getattr(shared, f.name) for f in fields(SharedConfig)}
    return RunConfig(config_path=path, dataset=dataset, cloze=cloze, **shared_values)
