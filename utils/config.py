"""Reading `config.cfg` into typed settings.

The file keeps the reference's INI sections and keys (`[shared_parameters]`,
`[train_parameters]`, `[test_parameters]`, one section per dataset, `[SelfComplete]`)
and adds the settings the reference hard-coded (box thresholds, flow backend, detector).
A dataset section may also override any `[SelfComplete]` key, which is how the small
built-in `synthetic` dataset trains quickly while the benchmarks keep the paper's values.
Relative paths are resolved against the folder holding the config file.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.errors import VECError

FOREGROUND_MODES = ("obj_det_with_motion", "obj_det", "simple_patch", "frame")
FLOW_METHODS = ("flownet2", "dis", "farneback", "raft")
DETECTORS = ("cascade_rcnn", "mmdet", "none")
LAYOUTS = ("UCSDped2", "avenue", "ShanghaiTech")


@dataclass(frozen=True)
class BoxParams:
    """Thresholds of the box pipeline (SPEC §3), per dataset."""

    score_thr: float
    min_area: float
    cover_thr: float
    area_thr: float
    binary_thr: int
    extend: int
    blur_size: int
    # The reference sums the two frame differences in uint8, so sums above 255 wrap.
    motion_uint8_wrap: bool = True


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    layout: str
    patch_size: int
    h_block: int
    w_block: int
    train_bbox_saved: bool
    test_bbox_saved: bool
    train_foreground_saved: bool
    test_foreground_saved: bool
    train_block_mode: int
    test_block_mode: int
    motion_thr: float
    flow_method: str
    detector: str
    detector_checkpoint: Path
    detector_config: Path | None
    flownet2_checkpoint: Path
    raft_weights: Path
    flow_batch_size: int
    detector_batch_size: int
    boxes: BoxParams


@dataclass(frozen=True)
class ClozeConfig:
    """`[SelfComplete]`: the cloze networks and their training (SPEC §5-7)."""

    border_mode: str
    epochs: int
    batch_size: int
    nf: int
    use_flow: bool
    context_frame_num: int
    context_of_num: int
    raw_range: int
    padding: bool
    lambda_raw: float
    lambda_of: float
    w_raw: float
    w_of: float
    learning_rate: float

    @property
    def tot_raw_num(self) -> int:
        return self.context_frame_num + 1 if self.border_mode == "predict" else 2 * self.context_frame_num + 1

    @property
    def tot_of_num(self) -> int:
        return self.context_of_num + 1 if self.border_mode == "predict" else 2 * self.context_of_num + 1

    @property
    def network_raw_range(self) -> int | None:
        """The network's `rawRange`: None (erase every position) when out of range, as the reference does."""
        return None if self.raw_range >= self.tot_raw_num else self.raw_range


@dataclass(frozen=True)
class RunConfig:
    config_path: Path
    dataset_name: str
    raw_dataset_dir: Path
    foreground_extraction_mode: str
    data_root_dir: Path
    modality: str
    method: str
    optical_flow_dir: Path
    results_dir: Path
    device: str
    seed: int
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


class _Reader:
    """Typed access to one INI file with one-line errors naming the missing key."""

    def __init__(self, parser: configparser.ConfigParser, path: Path) -> None:
        self.parser = parser
        self.path = path

    def _raw(self, section: str, key: str, fallback: str | None, override: str | None = None) -> str:
        if override is not None and self.parser.has_option(override, key):
            return self.parser.get(override, key)
        if self.parser.has_option(section, key):
            return self.parser.get(section, key)
        if fallback is not None:
            return fallback
        raise VECError(f"{self.path}: key '{key}' is missing from section [{section}]; add it (see the README's config table)")

    def str(self, section: str, key: str, fallback: str | None = None, override: str | None = None) -> str:
        return self._raw(section, key, fallback, override).strip()

    def int(self, section: str, key: str, fallback: int | None = None, override: str | None = None) -> int:
        value = self._raw(section, key, None if fallback is None else str(fallback), override)
        try:
            number = eval_number(value)
        except ValueError:
            number = float("nan")
        if not number.is_integer():
            raise VECError(f"{self.path}: [{section}] {key} = {value!r} is not an integer")
        return int(number)

    def float(self, section: str, key: str, fallback: float | None = None, override: str | None = None) -> float:
        value = self._raw(section, key, None if fallback is None else str(fallback), override)
        try:
            return float(eval_number(value))
        except ValueError:
            raise VECError(f"{self.path}: [{section}] {key} = {value!r} is not a number") from None

    def bool(self, section: str, key: str, fallback: bool | None = None, override: str | None = None) -> bool:
        value = self._raw(section, key, None if fallback is None else str(fallback), override).lower()
        if value in ("1", "yes", "true", "on"):
            return True
        if value in ("0", "no", "false", "off"):
            return False
        raise VECError(f"{self.path}: [{section}] {key} = {value!r} is not a boolean (use True or False)")

    def choice(self, section: str, key: str, choices: tuple[str, ...], fallback: str | None = None) -> str:
        value = self.str(section, key, fallback)
        if value not in choices:
            raise VECError(f"{self.path}: [{section}] {key} = {value!r} is not one of {', '.join(choices)}")
        return value


def eval_number(text: str) -> float:
    """A number, or a product such as `10*10` (how the paper writes its area thresholds)."""
    product = 1.0
    for factor in text.replace(" ", "").split("*"):
        product *= float(factor)
    return product


def resolve_device(name: str) -> str:
    """`auto` picks CUDA when present, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VECError(f"device = {name} was asked for but PyTorch sees no CUDA GPU; set device = auto or cpu in config.cfg")
    return name


def load_config(path: str | Path = "config.cfg") -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise VECError(f"config file {path} not found; pass --config PATH or run from the repository root")
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path)
    except configparser.Error as err:
        raise VECError(f"{path} is not a valid INI file: {str(err).splitlines()[0]}") from None
    base = path.resolve().parent
    r = _Reader(parser, path)

    def resolved(text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    shared = "shared_parameters"
    name = r.str(shared, "dataset_name")
    if not parser.has_section(name):
        raise VECError(f"{path}: dataset_name = {name} but there is no [{name}] section; add one or pick another dataset")
    mode = r.choice(shared, "foreground_extraction_mode", FOREGROUND_MODES)
    method = r.str(shared, "method", "SelfComplete")
    if method != "SelfComplete":
        raise VECError(f"{path}: method = {method} is not supported; only SelfComplete exists")
    modality = r.str(shared, "modality", "raw2flow")
    if modality != "raw2flow":
        raise VECError(f"{path}: modality = {modality} is not supported; VEC uses raw2flow")

    box = BoxParams(
        score_thr=r.float(name, "score_thr", 0.5),
        min_area=r.float(name, "min_area", 100),
        cover_thr=r.float(name, "cover_thr", 0.6),
        area_thr=r.float(name, "area_thr", 100),
        binary_thr=r.int(name, "binary_thr", 18),
        extend=r.int(name, "extend", 2),
        blur_size=r.int(name, "blur_size", 3),
        motion_uint8_wrap=r.bool(name, "motion_uint8_wrap", True),
    )
    detector_config = r.str(name, "detector_config", "")
    dataset = DatasetConfig(
        name=name,
        layout=r.choice(name, "layout", LAYOUTS, name if name in LAYOUTS else None),
        patch_size=r.int(name, "patch_size", 32),
        h_block=r.int(name, "h_block", 1),
        w_block=r.int(name, "w_block", 1),
        train_bbox_saved=r.bool(name, "train_bbox_saved", True),
        test_bbox_saved=r.bool(name, "test_bbox_saved", True),
        train_foreground_saved=r.bool(name, "train_foreground_saved", False),
        test_foreground_saved=r.bool(name, "test_foreground_saved", False),
        train_block_mode=r.int(name, "train_block_mode", 1),
        test_block_mode=r.int(name, "test_block_mode", 1),
        motion_thr=r.float(name, "motionThr", 0),
        flow_method=r.choice(name, "flow_method", FLOW_METHODS, "flownet2"),
        detector=r.choice(name, "detector", DETECTORS, "cascade_rcnn"),
        detector_checkpoint=resolved(r.str(name, "detector_checkpoint",
                                           "obj_det_checkpoints/cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth")),
        detector_config=resolved(detector_config) if detector_config else None,
        flownet2_checkpoint=resolved(r.str(name, "flownet2_checkpoint", "FlowNet2_src/pretrained/FlowNet2_checkpoint.pth.tar")),
        raft_weights=resolved(r.str(name, "raft_weights", "FlowNet2_src/pretrained/raft_large_C_T_SKHT_V2-ff5fadd5.pth")),
        flow_batch_size=r.int(name, "flow_batch_size", 8),
        detector_batch_size=r.int(name, "detector_batch_size", 4),
        boxes=box,
    )

    sc = "SelfComplete"
    cloze = ClozeConfig(
        border_mode=r.choice(sc, "border_mode", ("predict",), "predict"),
        epochs=r.int(sc, "epochs", override=name),
        batch_size=r.int(sc, "batch_size", override=name),
        nf=r.int(sc, "nf", override=name),
        use_flow=r.bool(sc, "useFlow", True, override=name),
        context_frame_num=r.int(sc, "context_frame_num", 4, override=name),
        context_of_num=r.int(sc, "context_of_num", 4, override=name),
        raw_range=r.int(sc, "rawRange", 10, override=name),
        padding=r.bool(sc, "padding", False, override=name),
        lambda_raw=r.float(sc, "lambda_raw", 1.0, override=name),
        lambda_of=r.float(sc, "lambda_of", 1.0, override=name),
        w_raw=r.float(sc, "w_raw", override=name),
        w_of=r.float(sc, "w_of", override=name),
        learning_rate=r.float(sc, "learning_rate", 1e-3, override=name),
    )
    if cloze.context_frame_num != 4 or cloze.context_of_num not in (0, 4):
        raise VECError(f"{path}: the cloze networks need context_frame_num = 4 and context_of_num = 0 or 4 "
                       f"(got {cloze.context_frame_num} and {cloze.context_of_num})")

    return RunConfig(
        config_path=path,
        dataset_name=name,
        raw_dataset_dir=resolved(r.str(shared, "raw_dataset_dir", "raw_datasets")),
        foreground_extraction_mode=mode,
        data_root_dir=resolved(r.str(shared, "data_root_dir", "data")),
        modality=modality,
        method=method,
        optical_flow_dir=resolved(r.str(shared, "optical_flow_dir", "optical_flow")),
        results_dir=resolved(r.str(shared, "results_dir", "results")),
        device=r.str(shared, "device", "auto"),
        seed=r.int(shared, "seed", 0),
        dataset=dataset,
        cloze=cloze,
    )
