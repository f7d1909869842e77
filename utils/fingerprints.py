"""What decides whether a cached result can be reused: the settings each cache and model records.

    precision_settings   the precision keys that are not fp32 (recorded only then)
    flow_settings        what makes a frame's flow: method, weights, precision
    box_settings         what makes the boxes besides the frames: mode, thresholds, detector
    box_source_settings  the same with the detector's files, for own videos' derived.json
    CubeSpec             the cube recipe (frozen); `fingerprint(boxes)` is what a store records
    boxes_fingerprint    a digest of every frame's boxes: cubes are reused only for the same boxes
    model_settings       what changes a trained model's meaning; test.py refuses a model made with others

Every stage reads these from here (the offline pipeline, own videos, the live scorer), so a
cache is reused under one rule wherever it is written. Each is computed from a RunConfig and
changes only when a setting that changes the result changes: records written before a key
existed still match (fp32 precision is left out, as it was before precision was a setting).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from utils.config import RunConfig
from utils.foreground.frame import MODES_WITH_DETECTOR


def precision_settings(cfg: RunConfig, *keys: str) -> dict:
    """The precision keys among `keys` that are not fp32: recorded only then, so what fp32 runs
    wrote before these keys existed (box settings, manifests) still matches."""
    return {key: getattr(cfg.dataset, key) for key in keys if getattr(cfg.dataset, key) != "fp32"}


def flow_settings(cfg: RunConfig) -> dict:
    """What makes a frame's flow besides the frames."""
    ds = cfg.dataset
    return {"flow_method": ds.flow_method, "flownet2_checkpoint": str(ds.flownet2_checkpoint),
            "raft_weights": str(ds.raft_weights), **precision_settings(cfg, "flow_precision")}


def box_settings(cfg: RunConfig) -> dict:
    """What decides the boxes besides the frames: mode, thresholds and detector."""
    ds = cfg.dataset
    detector = ({"detector": ds.detector, "detector_checkpoint": ds.detector_checkpoint.name,
                 **precision_settings(cfg, "detector_precision")}
                if cfg.foreground_extraction_mode in MODES_WITH_DETECTOR else {})
    return {"mode": cfg.foreground_extraction_mode, **asdict(ds.boxes), **detector}


def box_source_settings(cfg: RunConfig) -> dict:
    """The box settings with the detector's files in full, whatever the mode (own videos' records)."""
    ds = cfg.dataset
    return {"mode": cfg.foreground_extraction_mode, "detector": ds.detector,
            "detector_checkpoint": str(ds.detector_checkpoint), "detector_config": str(ds.detector_config),
            **asdict(ds.boxes), **precision_settings(cfg, "detector_precision")}


def boxes_fingerprint(boxes: list[np.ndarray]) -> str:
    """A digest of every frame's boxes: cubes are reusable only for the very same boxes."""
    digest = hashlib.sha256()
    for frame_boxes in boxes:
        array = np.ascontiguousarray(np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4))
        digest.update(len(array).to_bytes(8, "little"))
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CubeSpec:
    """How cubes are cut (docs/method.md §4): crop size, temporal context of frames and flows, the
    motion filter, the blocks a box is assigned to; and the flow they are cut from."""

    patch_size: int
    context_frame_num: int
    context_of_num: int
    border_mode: str
    motion_thr: float
    h_block: int
    w_block: int
    block_mode: int
    flow_method: str
    flow_precision: str = "fp32"

    @classmethod
    def of(cls, cfg: RunConfig, split: str) -> "CubeSpec":
        """The recipe of `split`'s cubes ("train" or "test": each has its own block mode)."""
        ds, cloze = cfg.dataset, cfg.cloze
        return cls(ds.patch_size, cloze.context_frame_num, cloze.context_of_num, cloze.border_mode, ds.motion_thr,
                   ds.h_block, ds.w_block, ds.for_split(split).block_mode, ds.flow_method, ds.flow_precision)

    @property
    def frames_per_cube(self) -> int:
        return self.context_frame_num + 1 if self.border_mode == "predict" else 2 * self.context_frame_num + 1

    @property
    def flows_per_cube(self) -> int:
        return self.context_of_num + 1 if self.border_mode == "predict" else 2 * self.context_of_num + 1

    def fingerprint(self, boxes: list[np.ndarray]) -> dict:
        """What a store of these cubes made from `boxes` records (the same record stores have always had)."""
        record = {"patch_size": self.patch_size, "context_frame_num": self.context_frame_num,
                  "context_of_num": self.context_of_num, "border_mode": self.border_mode,
                  "motion_thr": self.motion_thr, "blocks": [self.h_block, self.w_block],
                  "flow_method": self.flow_method, "block_mode": self.block_mode, "boxes": boxes_fingerprint(boxes)}
        if self.flow_precision != "fp32":
            record["flow_precision"] = self.flow_precision
        return record


def model_settings(cfg: RunConfig) -> dict:
    """The settings that change what a trained model means; test.py refuses a model trained with others."""
    ds, cloze = cfg.dataset, cfg.cloze
    return {"dataset": cfg.dataset_name, "layout": ds.layout, "patch_size": ds.patch_size,
            "blocks": [ds.h_block, ds.w_block], "flow_method": ds.flow_method, "motion_thr": ds.motion_thr,
            "boxes": box_settings(cfg), "nf": cloze.nf, "context_frame_num": cloze.context_frame_num,
            "context_of_num": cloze.context_of_num, "border_mode": cloze.border_mode, "raw_range": cloze.raw_range,
            "use_flow": cloze.use_flow, "padding": cloze.padding, **precision_settings(cfg, "flow_precision")}
