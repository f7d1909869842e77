"""`config.cfg` read into typed settings: one schema, defaults in one place, unknown keys refused.

The file keeps the reference's INI sections and keys:

    [shared_parameters]   SharedConfig   which dataset, folders, device, seed
    [train_parameters]    mode = train   (the reference's; nothing else)
    [test_parameters]     mode = test
    [<dataset>]           DatasetConfig  frames layout, flow, boxes, cubes, caches
    [SelfComplete]        ClozeConfig    the cloze networks and their training

Each section is a frozen dataclass whose fields carry the defaults; a key is read by
its field name (or the reference's spelling in `ALIASES`) in any case, as configparser
matches keys, and converted by the field's type; section names keep their case. A
dataset section may also set any `[SelfComplete]` key, which then holds for that
dataset only. Unknown sections and keys are errors naming the closest known key,
so a typo never falls back to a default silently. Relative paths are resolved
against the folder holding the config file. `--set SECTION.KEY=VALUE` on every script
overrides the file, and is never overridden by it: of the sections a key is read from
(the dataset's, then [SelfComplete]), one set by --set comes first (`_Reader.source_section`).
"""
from __future__ import annotations

import configparser
import difflib
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import torch

from utils.errors import VECError
from utils.precision import check_precision, check_precision_applies
from utils.weights import WEIGHTS

FlowMethod = Literal["flownet2", "dis", "farneback", "raft"]
Detector = Literal["cascade_rcnn", "mmdet", "none"]
Layout = Literal["UCSDped2", "avenue", "ShanghaiTech"]
ForegroundMode = Literal["obj_det_with_motion", "obj_det", "simple_patch", "frame"]
Precision = Literal["fp32", "fp16", "bf16"]  # utils/precision.py: fp32 = no autocast (the reference's numbers)

# The reference's camelCase spellings of our snake_case keys.
ALIASES = {"motionThr": "motion_thr", "useFlow": "use_flow", "rawRange": "raw_range"}
# The reference's keys that this implementation does not need (scores are always
# recomputed; memory-mapped cubes need no segments); accepted so its files load.
IGNORED_KEYS = {"scores_saved", "saveSegNum"}
SHARED, TRAIN, TEST, CLOZE = "shared_parameters", "train_parameters", "test_parameters", "SelfComplete"


_CONTEXT_HINT = "the cloze networks need context_frame_num = 4 and context_of_num = 0 or 4"


def _at_least(minimum: float) -> dict:
    return {"min": minimum}


def _between(minimum: float, maximum: float) -> dict:
    return {"min": minimum, "max": maximum}


@dataclass(frozen=True)
class SharedConfig:
    """`[shared_parameters]`."""

    dataset_name: str = "synthetic"
    raw_dataset_dir: Path = Path("raw_datasets")
    foreground_extraction_mode: ForegroundMode = "obj_det_with_motion"
    data_root_dir: Path = Path("data")
    modality: Literal["raw2flow"] = "raw2flow"
    method: Literal["SelfComplete"] = "SelfComplete"
    optical_flow_dir: Path = Path("optical_flow")
    results_dir: Path = Path("results")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = field(default=0, metadata=_between(0, 2**32 - 1))  # numpy's seeds are 32-bit


@dataclass(frozen=True)
class BoxParams:
    """Thresholds of the box pipeline (docs/method.md §3), per dataset."""

    score_thr: float = field(default=0.5, metadata=_between(0, 1))
    min_area: float = field(default=100, metadata=_at_least(0))
    cover_thr: float = field(default=0.6, metadata=_between(0, 1))
    area_thr: float = field(default=100, metadata=_at_least(0))
    binary_thr: int = field(default=18, metadata=_between(0, 255))  # on 8-bit frame differences
    extend: int = field(default=2, metadata=_at_least(0))
    blur_size: int = field(default=3, metadata={"min": 1, "odd": True, "hint": "a Gaussian blur's kernel size"})
    # The reference sums the two frame differences in uint8, so sums above 255 wrap.
    motion_uint8_wrap: bool = True


@dataclass(frozen=True)
class SplitOptions:
    """The settings that differ between the train and the test split of a dataset."""

    reuse_boxes: bool
    reuse_cubes: bool
    block_mode: int


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset's section: `[UCSDped2]`, `[avenue]`, `[ShanghaiTech]`, `[synthetic]` or your own."""

    name: str = field(default="", metadata={"computed": True})
    layout: Layout = "UCSDped2"  # defaults to the section name for the three benchmarks
    patch_size: int = field(default=32, metadata={"min": 8, "multiple": 8,
                                                  "hint": "the cloze networks halve the patch three times"})
    h_block: int = field(default=1, metadata=_at_least(1))
    w_block: int = field(default=1, metadata=_at_least(1))
    train_bbox_saved: bool = True
    test_bbox_saved: bool = True
    train_foreground_saved: bool = False
    test_foreground_saved: bool = False
    train_block_mode: int = field(default=1, metadata=_at_least(1))
    test_block_mode: int = field(default=1, metadata=_at_least(1))
    motion_thr: float = field(default=0.0, metadata=_at_least(0))
    flow_method: FlowMethod = "flownet2"
    flow_precision: Precision = "fp32"  # FlowNet2 under torch.autocast in fp16 / bf16 (flow_method = flownet2)
    detector: Detector = "cascade_rcnn"
    detector_precision: Precision = "fp32"  # Cascade R-CNN's layers in fp16 / bf16 (detector = cascade_rcnn)
    detector_checkpoint: Path = WEIGHTS["cascade_rcnn"].default_path
    detector_config: Path | None = None  # an MMDetection 3 config, for detector = mmdet
    flownet2_checkpoint: Path = WEIGHTS["flownet2"].default_path
    raft_weights: Path = WEIGHTS["raft"].default_path
    flow_batch_size: int = field(default=8, metadata=_at_least(1))
    detector_batch_size: int = field(default=4, metadata=_at_least(1))
    # Gaussian temporal smoothing of frame scores (frames), reported beside the paper's unsmoothed numbers; 0 = off.
    smoothing_sigma: float = field(default=0.0, metadata=_at_least(0))
    boxes: BoxParams = field(default_factory=BoxParams, metadata={"flattened": True})

    def for_split(self, split: str) -> SplitOptions:
        if split == "train":
            return SplitOptions(self.train_bbox_saved, self.train_foreground_saved, self.train_block_mode)
        return SplitOptions(self.test_bbox_saved, self.test_foreground_saved, self.test_block_mode)

    @property
    def scene_level(self) -> bool:
        """ShanghaiTech's model files have an extra outer list (one scene), as the reference saves them."""
        return self.layout == "ShanghaiTech"


@dataclass(frozen=True)
class ClozeConfig:
    """`[SelfComplete]`: the cloze networks and their training (docs/method.md §5-7). Paper values."""

    border_mode: Literal["predict"] = "predict"
    epochs: int = field(default=20, metadata=_at_least(1))
    batch_size: int = field(default=128, metadata=_at_least(1))
    nf: int = field(default=32, metadata=_at_least(1))
    use_flow: bool = True
    context_frame_num: Literal[4] = field(default=4, metadata={"hint": _CONTEXT_HINT})
    context_of_num: Literal[0, 4] = field(default=4, metadata={"hint": _CONTEXT_HINT})
    raw_range: int = field(default=10, metadata=_at_least(0))
    padding: bool = False
    lambda_raw: float = field(default=1.0, metadata=_at_least(0))
    lambda_of: float = field(default=1.0, metadata=_at_least(0))
    w_raw: float = field(default=0.5, metadata=_at_least(0))
    w_of: float = field(default=1.0, metadata=_at_least(0))
    learning_rate: float = field(default=1e-3, metadata={"min": 0, "exclusive": True})
    # How the steps run, not what they compute (utils/cloze_steps.py): fp32 is the reference's
    # arithmetic; bf16 runs the networks' forward under bfloat16 autocast. cuda_graphs captures
    # the training and scoring steps on a GPU (single process).
    precision: Literal["fp32", "bf16"] = "fp32"
    cuda_graphs: bool = True

    @property
    def tot_raw_num(self) -> int:
        return self.context_frame_num + 1

    @property
    def tot_of_num(self) -> int:
        return self.context_of_num + 1

    @property
    def network_raw_range(self) -> int | None:
        """The network's `rawRange`: None (erase every position) when out of range, as the reference does."""
        return None if self.raw_range >= self.tot_raw_num else self.raw_range


@dataclass(frozen=True, kw_only=True)
class RunConfig(SharedConfig):
    """Everything a script needs: the shared settings, the chosen dataset and the cloze settings."""

    config_path: Path
    dataset: DatasetConfig
    cloze: ClozeConfig

    @property
    def dataset_dir(self) -> Path:
        return self.raw_dataset_dir / self.dataset_name

    @property
    def flow_dir(self) -> Path:
        return self.optical_flow_dir / self.dataset_name

    @property
    def work_dir(self) -> Path:
        """Where cubes, models and training scores go (the reference's `data/raw2flow`)."""
        return self.data_root_dir / self.modality


BUILTIN_DATASETS = ("UCSDped2", "avenue", "ShanghaiTech", "synthetic")


def eval_number(text: str) -> float:
    """A number, or a product such as `10*10` (how the paper writes its area thresholds)."""
    product = 1.0
    for factor in text.replace(" ", "").split("*"):
        product *= float(factor)
    return product


def resolve_device(name: str) -> str:
    """`auto` picks CUDA when present, else the CPU; a device that does not exist is a one-line error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VECError(f"device = {name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise VECError(f"device = {name} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VECError(f"device = {name} was asked for but PyTorch sees no CUDA GPU; set device = auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VECError(f"device = {name} does not exist: PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return name


def key_name(key: str) -> str:
    """The schema's name of a key as written. Keys match in any case, as configparser's own do (a
    file it wrote back has them lowercased), and the reference's spellings are aliases:
    motionThr, motionthr and MOTION_THR are all motion_thr."""
    lowered = key.strip().lower()
    return _ALIAS_NAMES.get(lowered, lowered)


_ALIAS_NAMES = {alias.lower(): name for alias, name in ALIASES.items()}


def _closest(word: str, known) -> str:
    by_lowered = {name.lower(): name for name in known}
    match = difflib.get_close_matches(word.lower(), list(by_lowered), n=1, cutoff=0.5)
    return f"; did you mean '{by_lowered[match[0]]}'?" if match else ""


@dataclass(frozen=True)
class _Setting:
    """One key as it was written: its spelling, its text, and where (the file or --set), for error lines."""

    section: str
    key: str
    text: str
    source: str  # the config file's path, or "--set SECTION.KEY"

    @property
    def where(self) -> str:
        return self.source if self.source.startswith("--set ") else f"{self.source}: [{self.section}] {self.key}"


def _read_settings(parser: configparser.ConfigParser, path: Path,
                   overrides: list[str] | None) -> dict[str, dict[str, _Setting]]:
    """section → key name (`key_name`) → its setting; `--set` replaces the file's setting of the
    same key, whatever the case or spelling of either. Section names keep their case."""
    settings: dict[str, dict[str, _Setting]] = {}
    for section in parser.sections():
        keys = settings[section] = {}
        for key in parser.options(section):
            name = key_name(key)
            if name in keys:
                raise VECError(f"{path}: [{section}] sets {name} twice ({keys[name].key} and {key}); keep one")
            keys[name] = _Setting(section, key, parser.get(section, key), str(path))
    for section, key, value in parse_overrides(overrides):
        settings.setdefault(section, {})[key_name(key)] = _Setting(section, key, value, f"--set {section}.{key}")
    return settings


def _schema(cls) -> dict[str, tuple[object, dict]]:
    """Every key a section read into dataclass `cls` accepts (flattened dataclasses included) → (type, metadata)."""
    hints = typing.get_type_hints(cls)
    keys = {}
    for f in fields(cls):
        if f.metadata.get("flattened"):
            keys.update(_schema(hints[f.name]))
        elif not f.metadata.get("computed"):
            keys[f.name] = (hints[f.name], f.metadata)
    return keys


def _section_schema(section: str, is_dataset: bool) -> dict[str, tuple[object, dict]]:
    if section == SHARED:
        return _schema(SharedConfig)
    if section in (TRAIN, TEST):
        return {"mode": (Literal["train"] if section == TRAIN else Literal["test"], {})}
    if section == CLOZE:
        return _schema(ClozeConfig)
    if is_dataset:
        return {**_schema(DatasetConfig), **_schema(ClozeConfig)}
    return {}


def _is_dataset(section: str, keys: dict[str, _Setting]) -> bool:
    return section in BUILTIN_DATASETS or "layout" in keys


def _check_names(settings: dict[str, dict[str, _Setting]], path: Path) -> None:
    """Refuse unknown sections and keys, naming the closest known one."""
    fixed = (SHARED, TRAIN, TEST, CLOZE)
    ignored = {key_name(key) for key in IGNORED_KEYS}
    for section, keys in settings.items():
        if section not in fixed and not _is_dataset(section, keys):
            source = next(iter(keys.values())).source if keys else str(path)
            raise VECError(f"{source}: unknown section [{section}]{_closest(section, fixed + BUILTIN_DATASETS)} "
                           "(a section for your own dataset needs a `layout = ...` key)")
        known = set(_section_schema(section, _is_dataset(section, keys)))
        for name, setting in keys.items():
            if name not in known and name not in ignored:
                raise VECError(f"{setting.source}: unknown key '{setting.key}' in [{section}]"
                               f"{_closest(setting.key, known | set(ALIASES))}")


def _range_text(metadata: dict) -> str | None:
    """'≥ 1', '> 0', 'between 0 and 1': the range a number must lie in, None if any."""
    minimum, maximum = metadata.get("min"), metadata.get("max")
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    if minimum is not None:
        return f"{'>' if metadata.get('exclusive') else '≥'} {minimum}"
    return None if maximum is None else f"≤ {maximum}"


def _convert(setting: _Setting, kind, metadata: dict, resolve) -> object:
    """The value of `setting` as type `kind`, in the range `metadata` gives; a one-line error naming where it
    was written otherwise. `resolve` makes a relative path absolute."""
    text = setting.text.strip()

    def fail(allowed: str) -> VECError:
        hint = f" ({metadata['hint']})" if "hint" in metadata else ""
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
            hint = f" ({metadata['hint']})" if "hint" in metadata else ""
            raise VECError(f"{setting.where} = {text!r} is out of range: it must be {_range_text(metadata)}{hint}")
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


class _Reader:
    """Every setting converted where it is written (a [SelfComplete] value a dataset section overrides,
    a dataset section that is not the chosen one), so a bad value anywhere is an error; `read` then
    takes each field from the section `source_section` names."""

    def __init__(self, settings: dict[str, dict[str, _Setting]], path: Path) -> None:
        self.settings, self.path = settings, path
        self.values: dict[str, dict[str, object]] = {}
        for section, keys in settings.items():
            schema = _section_schema(section, _is_dataset(section, keys))
            self.values[section] = {name: _convert(setting, *schema[name], self.resolve)
                                    for name, setting in keys.items() if name in schema}

    def lookup(self, section: str, key: str) -> _Setting | None:
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
        """The section `key` (a field name) is taken from: the first of `sections` where --set gives it,
        else the first where the file sets it, else None. So `--set SelfComplete.epochs=2` holds for a
        dataset whose section sets epochs in the file, and `--set <dataset>.epochs=3` wins over both."""
        setting = [s for s in sections if key in self.values.get(s, {})]
        on_command_line = [s for s in setting if self.settings[s][key].source.startswith("--set ")]
        return (on_command_line or setting or [None])[0]

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
    (utils.precision.check_precision) on the device the run uses."""
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
    settings = _read_settings(parser, path, overrides)
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
