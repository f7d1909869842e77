"""Any MMDetection 3 detector as the box pipeline's detector (`detector = mmdet`).

For users who have MMDetection installed (see requirements-mmdet.txt); the project
imports mmdet nowhere else. Output: per frame (N, 5) [x1, y1, x2, y2, score], all classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from utils.errors import VECError


class MMDetDetector:
    def __init__(self, config_path: str | Path, checkpoint_path: str | Path, device: str = "cpu",
                 score_thr: float = 0.05) -> None:
        try:
            from mmdet.apis import inference_detector, init_detector
        except ImportError:
            raise VECError("detector = mmdet needs MMDetection 3: pip install -r requirements-mmdet.txt "
                           "(or use detector = cascade_rcnn, which needs no mmdet)") from None
        for path, what in ((config_path, "config"), (checkpoint_path, "checkpoint")):
            if not Path(path).is_file():
                raise VECError(f"MMDetection {what} {path} not found; set detector_config / detector_checkpoint")
        self._inference = inference_detector
        self.model = init_detector(str(config_path), str(checkpoint_path), device=device)
        self.score_thr = score_thr

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = self._inference(self.model, list(frames))
        detections = []
        for result in results:
            instances = result.pred_instances
            keep = instances.scores > self.score_thr
            boxes = instances.bboxes[keep].cpu().numpy()
            scores = instances.scores[keep].cpu().numpy()
            detections.append(np.hstack([boxes, scores[:, None]]).astype(np.float32))
        return detections
