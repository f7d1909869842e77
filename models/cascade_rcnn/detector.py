"""Cascade R-CNN R101-FPN (Cai & Vasconcelos, CVPR 2018) for inference, in PyTorch + torchvision ops.

Numerically MMDetection 3.3's `cascade-rcnn_r101_fpn_1x_coco` at test time, with the same
state-dict keys, so the model-zoo checkpoint loads with strict=True and no mmcv build:

    preprocess: keep-ratio resize, normalise, pad to 32
    backbone:   ResNet-101 → FPN (P2-P6)                          backbone.py
    rpn_head:   3 anchors per position → 1000 proposals            rpn.py
    roi_head:   3 cascade stages → per-class NMS, top 100          roi_heads.py

The methods of this class are the stage-by-stage API the parity checks call; they accept
numpy arrays as well as tensors (converted here, at the boundary) and delegate to the parts.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from models.cascade_rcnn.backbone import FeaturePyramid, ResNetBackbone
from models.cascade_rcnn.roi_heads import CascadeRoIHead
from models.cascade_rcnn.rpn import RegionProposalHead

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB
PIXEL_STD = (58.395, 57.12, 57.375)
TEST_SCALE = (1333, 800)


def rescaled_size(height: int, width: int, scale: tuple[int, int] = TEST_SCALE) -> tuple[int, int]:
    """(new_h, new_w) of a keep-ratio resize fitting inside `scale` (mmcv.imrescale)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class CascadeRCNN(nn.Module):
    """Cascade R-CNN R101-FPN, COCO classes. Keep it in eval mode (frozen BatchNorm, as mmdet's)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNetBackbone()
        self.neck = FeaturePyramid()
        self.rpn_head = RegionProposalHead()
        self.roi_head = CascadeRoIHead()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1), persistent=False)

    rescaled_size = staticmethod(rescaled_size)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _tensor(self, value) -> Tensor:
        return torch.as_tensor(value, device=self.device)

    # --- preprocessing (mmdet's test pipeline and data preprocessor)
    def preprocess_batch(self, images_bgr: Sequence[np.ndarray], scale: tuple[int, int] = TEST_SCALE
                         ) -> tuple[Tensor, list[tuple[int, int]], list[tuple[float, float]]]:
        """BGR uint8 frames → (inputs (B, 3, H', W') zero-padded to a common multiple of 32,
        img_shape (h, w) after resize, scale_factor (w, h)) per frame."""
        resized, shapes, factors = [], [], []
        for image in images_bgr:
            height, width = image.shape[:2]
            new_h, new_w = rescaled_size(height, width, scale)
            resized.append(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR))
            shapes.append((new_h, new_w))
            factors.append((new_w / width, new_h / height))
        pad_h = max(math.ceil(h / 32) * 32 for h, _ in shapes)
        pad_w = max(math.ceil(w / 32) * 32 for _, w in shapes)
        batch = torch.zeros(len(resized), 3, pad_h, pad_w, device=self.device)
        for slot, (image, (new_h, new_w)) in enumerate(zip(resized, shapes)):
            # Sent as the uint8 BGR frame; reordered to RGB planes and normalised on the device.
            rgb = torch.from_numpy(image).to(self.device).permute(2, 0, 1).flip(0)
            batch[slot, :, :new_h, :new_w] = (rgb.float() - self.pixel_mean) / self.pixel_std
        return batch, shapes, factors

    def preprocess(self, img_bgr: np.ndarray, scale: tuple[int, int] = TEST_SCALE
                   ) -> tuple[Tensor, tuple[int, int], tuple[float, float]]:
        """One BGR uint8 frame → (inputs (1, 3, H', W'), img_shape (h, w) after resize, scale_factor (w, h))."""
        inputs, shapes, factors = self.preprocess_batch([img_bgr], scale)
        return inputs, shapes[0], factors[0]

    # --- network stages
    def extract_feat(self, inputs) -> list[Tensor]:
        """FPN levels P2-P6."""
        return self.neck(self.backbone(self._tensor(inputs)))

    def rpn(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Objectness logits (B, 3, h, w) and deltas (B, 12, h, w) per level."""
        return self.rpn_head([self._tensor(f) for f in feats])

    def proposals_with_scores(self, feats: Sequence[Tensor], img_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """RPN proposals of the first image in `feats` and their objectness."""
        return self.rpn_head.proposals([self._tensor(f) for f in feats], _int_pair(img_shape))

    def proposals(self, feats: Sequence[Tensor], img_shape: tuple[int, int]) -> Tensor:
        """(N, 4) RPN proposals in resized-image coordinates, by decreasing objectness."""
        return self.proposals_with_scores(feats, img_shape)[0]

    def roi_stage(self, stage: int, feats: Sequence[Tensor], rois) -> tuple[Tensor, Tensor]:
        """Class logits (N, 81) and deltas (N, 4) of cascade stage `stage` for rois (N, 5: batch idx, box)."""
        return self.roi_head.stage(stage, [self._tensor(f) for f in feats], self._tensor(rois))

    def refine(self, feats: Sequence[Tensor], proposals, img_shape: tuple[int, int], batch_index: int = 0
               ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """The cascade: the rois each stage saw and its logits and deltas."""
        return self.roi_head.refine([self._tensor(f) for f in feats], self._tensor(proposals),
                                    _int_pair(img_shape), batch_index)

    def detect(self, inputs, img_shape: tuple[int, int], scale_factor: tuple[float, float],
               score_thr: float = 0.05, feats: Sequence[Tensor] | None = None, batch_index: int = 0
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Detections (≤ 100) of one image in original-image coordinates: (boxes, scores, labels).

        With `feats` (of a whole batch) the backbone is not run again; `batch_index` picks the image.
        """
        img_shape = _int_pair(img_shape)
        scale_factor = (float(scale_factor[0]), float(scale_factor[1]))
        if feats is None:
            feats = self.extract_feat(inputs)
        image_feats = [self._tensor(f)[batch_index:batch_index + 1] for f in feats]
        proposals, _ = self.rpn_head.proposals(image_feats, img_shape)
        return self.roi_head.predict(image_feats, proposals, img_shape, scale_factor, score_thr)

    def detect_batch(self, inputs, img_shapes: Sequence[tuple[int, int]],
                     scale_factors: Sequence[tuple[float, float]], score_thr: float = 0.05,
                     feats: Sequence[Tensor] | None = None) -> list[tuple[Tensor, Tensor, Tensor]]:
        """`detect` of every image of a batch, with each network layer called once for the batch: the
        RPN head on all images, the cascade stages on all images' rois. Proposal selection, NMS and
        the top 100 are per image, as in mmdet. On a GPU this divides the heads' kernel launches, and
        the host-device synchronisations of RoIAlign's split of the rois by level, by the batch size."""
        img_shapes = [_int_pair(shape) for shape in img_shapes]
        scale_factors = [(float(f[0]), float(f[1])) for f in scale_factors]
        feats = self.extract_feat(inputs) if feats is None else [self._tensor(f) for f in feats]
        cls_scores, deltas = self.rpn_head(feats)
        proposals = [boxes for boxes, _ in self.rpn_head.decode_batch(cls_scores, deltas, img_shapes)]
        return self.roi_head.predict_batch(feats, proposals, img_shapes, scale_factors, score_thr)


def _int_pair(shape) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])
