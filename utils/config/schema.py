"""The settings' schema: one frozen dataclass per INI section, whose fields carry the defaults and ranges.

    SharedConfig, DatasetConfig (+ BoxParams), ClozeConfig   the sections' keys, defaults and ranges
    SplitOptions, RunConfig                                    what the scripts get from them
    ALIASES, IGNORED_KEYS, SHARED/TRAIN/TEST/CLOZE, BUILTIN_DATASETS   the reference's names
    KeySpec, section_keys, keys_of_section                     each key with its type, default and range
    eval_number, key_name                                      how a number and a key's name are written
"""
from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Literal

from utils.weights import WEIGHTS

FlowMethod = Literal["flownet2", "dis", "farneback", "raft"]
Detector = Literal["cascade_rcnn", "mmdet", "none"]
Layout = Literal["UCSDped2", "avenue", "ShanghaiTech"]
ForegroundMode = Literal["obj_det_with_motion", "obj_det", "simple_patch", "frame"]
Precision = Literal["fp32", "fp16", "bf16"]  # utils/infra/precision.py: fp32 = no autocast (the reference's numbers)

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


@dataclass(frozen=True)
class KeySpec:
    """One key of a section: the type its text is read as, its default, and the limits a value must keep
    (metadata: min, max, exclusive, odd, multiple, and a hint for the error line)."""

    kind: object  # a Literal of the choices, bool, int, float, str, Path or Path | None
    default: object
    metadata: Mapping

    @property
    def range(self) -> str | None:
        """'≥ 1', '> 0', 'between 0 and 1': the range a number must lie in, None if any."""
        minimum, maximum = self.metadata.get("min"), self.metadata.get("max")
        if minimum is not None and maximum is not None:
            return f"between {minimum} and {maximum}"
        if minimum is not None:
            return f"{'>' if self.metadata.get('exclusive') else '≥'} {minimum}"
        return None if maximum is None else f"≤ {maximum}"


def section_keys(cls) -> dict[str, KeySpec]:
    """Every key a section read into dataclass `cls` accepts (flattened dataclasses included, in field order)
    → its type, default and range."""
    hints = typing.get_type_hints(cls)
    keys = {}
    for f in fields(cls):
        if f.metadata.get("flattened"):
            keys.update(section_keys(hints[f.name]))
        elif not f.metadata.get("computed"):
            default = f.default if f.default is not MISSING else f.default_factory()
            keys[f.name] = KeySpec(hints[f.name], default, f.metadata)
    return keys


def keys_of_section(section: str, is_dataset: bool) -> dict[str, KeySpec]:
    """The keys INI section `section` accepts: a dataset's section takes its own keys and any [SelfComplete]
    key; a section that is none of the known ones takes none."""
    if section == SHARED:
        return section_keys(SharedConfig)
    if section in (TRAIN, TEST):
        mode = "train" if section == TRAIN else "test"
        return {"mode": KeySpec(Literal[mode], mode, {})}
    if section == CLOZE:
        return section_keys(ClozeConfig)
    if is_dataset:
        return {**section_keys(DatasetConfig), **section_keys(ClozeConfig)}
    return {}


def eval_number(text: str) -> float:
    """A number, or a product such as `10*10` (how the paper writes its area thresholds)."""
    product = 1.0
    for factor in text.replace(" ", "").split("*"):
        product *= float(factor)
    return product


def key_name(key: str) -> str:
    """The schema's name of a key as written. Keys match in any case, as configparser's own do (a
    file it wrote back has them lowercased), and the reference's spellings are aliases:
    motionThr, motionthr and MOTION_THR are all motion_thr."""
    lowered = key.strip().lower()
    return _ALIAS_NAMES.get(lowered, lowered)


_ALIAS_NAMES = {alias.lower(): name for alias, name in ALIASES.items()}
