"""Appearance detectors for the box stage: BGR frames → per-frame (N, 5) [x1, y1, x2, y2, score], all classes.

    CascadeRCNNDetector   the paper's detector (models/cascade_rcnn/), from the model-zoo checkpoint
    MMDetDetector         any MMDetection 3 model, for users who have mmdet installed
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from models.cascade_rcnn import TEST_SCALE, CascadeRCNN
from utils.infra.errors import VECError
from utils.infra.io import load_state_dict_file
from utils.infra.precision import autocast, check_precision, check_precision_applies
from utils.weights import WEIGHTS, check_before_use, missing_hint

Detector = Callable[[Sequence[np.ndarray]], list]

CHECKPOINT_NAME = WEIGHTS["cascade_rcnn"].filename


def load_cascade_rcnn(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> CascadeRCNN:
    """The model-zoo checkpoint (dict with `state_dict` and `meta`), loaded safely and strictly, eval mode."""
    path = Path(checkpoint_path)
    check_before_use("cascade_rcnn", path)
    state = load_state_dict_file(path, f"{missing_hint('cascade_rcnn')}, or use the reference's box files, "
                                 "or set detector = none in config.cfg")
    model = CascadeRCNN()
    if state is None or set(state) != set(model.state_dict()):
        raise VECError(f"{path} is not the MMDetection 2/3 Cascade R-CNN R101-FPN checkpoint; use {CHECKPOINT_NAME} "
                       "(the reference's 2018 mmdet v1 file has other conventions and is not supported)")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


class CascadeRCNNDetector:
    """Runs each layer once per batch of frames (backbone, RPN head, cascade stages over all frames'
    proposals); proposal selection and NMS per frame, as in mmdet.

    `precision` (detector_precision): fp32 (the reference's numbers), or fp16 / bf16 under torch.autocast
    for the network's layers; proposal decoding, RoIAlign, box decoding, clipping, NMS, score thresholds
    and rescaling stay in float32 (models/cascade_rcnn/ casts the heads' outputs)."""

    def __init__(self, model: CascadeRCNN, device: str = "cpu", batch_size: int = 4, score_thr: float = 0.05,
                 scale: tuple[int, int] = TEST_SCALE, precision: str = "fp32") -> None:
        check_precision(precision, device, "detector_precision")
        self.model, self.device, self.precision = model.to(device).eval(), device, precision
        self.batch_size, self.score_thr, self.scale = batch_size, score_thr, scale

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **options) -> "CascadeRCNNDetector":
        return cls(load_cascade_rcnn(path, device), device, **options)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.detect_prepared(self.prepare(frames))

    def prepare(self, frames: Sequence[np.ndarray]) -> list[tuple]:
        """Frames → the network's input batches (resized, normalised, on the device), for `detect_prepared`.
        The box stage calls this on its reading thread, so the next frames' resizing (on the CPU) and
        upload overlap the network's work on this batch."""
        with torch.inference_mode():  # per thread, and this may run on another thread than the network
            return [self.model.preprocess_batch(frames[start:start + self.batch_size], self.scale)
                    for start in range(0, len(frames), self.batch_size)]

    @torch.inference_mode()
    def detect_prepared(self, batches: list[tuple]) -> list[np.ndarray]:
        results = []
        for inputs, shapes, factors in batches:
            with autocast(self.precision, self.device):
                detections = self.model.detect_batch(inputs, shapes, factors, self.score_thr)
            for boxes, scores, _ in detections:
                results.append(torch.cat([boxes, scores[:, None]], 1).float().cpu().numpy())
        return results


class MMDetDetector:
    """An MMDetection 3 model (see requirements-mmdet.txt); the project imports mmdet nowhere else."""

    def __init__(self, model, score_thr: float = 0.05) -> None:
        from mmdet.apis import inference_detector

        self.model, self.score_thr, self._inference = model, score_thr, inference_detector

    @classmethod
    def from_checkpoint(cls, config_path: str | Path, checkpoint_path: str | Path, device: str = "cpu",
                        score_thr: float = 0.05) -> "MMDetDetector":
        try:
            from mmdet.apis import init_detector
        except ImportError:
            raise VECError("detector = mmdet needs MMDetection 3: pip install -r requirements-mmdet.txt "
                           "(or use detector = cascade_rcnn, which needs no mmdet)") from None
        for path, what in ((config_path, "config"), (checkpoint_path, "checkpoint")):
            if not Path(path).is_file():
                raise VECError(f"MMDetection {what} {path} not found; set detector_config / detector_checkpoint")
        return cls(init_detector(str(config_path), str(checkpoint_path), device=device), score_thr)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        detections = []
        for result in self._inference(self.model, list(frames)):
            instances = result.pred_instances
            keep = instances.scores > self.score_thr
            boxes = instances.bboxes[keep].cpu().numpy()
            scores = instances.scores[keep].cpu().numpy()
            detections.append(np.hstack([boxes, scores[:, None]]).astype(np.float32))
        return detections


def build_detector(name: str, *, checkpoint: Path, config: Path | None, device: str, batch_size: int,
                   precision: str = "fp32") -> Detector | None:
    """The appearance detector named by `detector` in config.cfg (None for `none`).

    `precision` (detector_precision) applies to cascade_rcnn only; another detector with fp16 / bf16 is an error."""
    check_precision_applies(precision, "detector_precision", "detector", name, "cascade_rcnn")
    if name == "none":
        return None
    if name == "cascade_rcnn":
        return CascadeRCNNDetector.from_checkpoint(checkpoint, device=device, batch_size=batch_size,
                                                   precision=precision)
    if name == "mmdet":
        if config is None:
            raise VECError("detector = mmdet needs detector_config = PATH of an MMDetection 3 config in config.cfg")
        return MMDetDetector.from_checkpoint(config, checkpoint, device=device)
    raise VECError(f"detector = {name} is unknown; use cascade_rcnn, mmdet or none")
