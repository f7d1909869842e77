"""Cascade R-CNN R101-FPN (Cai & Vasconcelos, CVPR 2018) for inference, in PyTorch + torchvision ops.

Numerically MMDetection 3.3's `cascade-rcnn_r101_fpn_1x_coco` at test time, with the same
state-dict keys, so the model-zoo checkpoint loads with strict=True and no mmcv build:

    image → keep-ratio resize, normalise, pad to 32 → ResNet-101 → FPN (P2-P6, P6 by max-pool)
    → RPN (3 anchors per position, per-level top 1000, NMS 0.7, 1000 proposals)
    → 3 cascade stages (RoIAlign 7x7, two shared FCs, class-agnostic regression with their
      own box-coder stds; each stage refines the boxes the next one sees)
    → class logits averaged over stages, softmax, per-class NMS 0.5, top 100.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import nms, roi_align

from utils.checkpoints import load_torch_file
from utils.errors import VECError

CHECKPOINT_NAME = "cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth"
CHECKPOINT_URL = ("https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_rcnn_r101_fpn_1x_coco/"
                  + CHECKPOINT_NAME)
PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB
PIXEL_STD = (58.395, 57.12, 57.375)
FPN_STRIDES = (4, 8, 16, 32, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SCALE = 8
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
NUM_CLASSES = 80  # COCO; the classifier has one more output for background (last)
RPN_PRE_NMS, RPN_IOU, RPN_MAX = 1000, 0.7, 1000
RCNN_IOU, RCNN_MAX = 0.5, 100
WH_RATIO_CLIP = 16 / 1000
FINEST_SCALE = 56
NMS_SPLIT_THRESHOLD = 10000


# ----------------------------------------------------------------------------- box arithmetic
def decode_deltas(rois: Tensor, deltas: Tensor, stds: Sequence[float], max_shape: tuple[int, int]) -> Tensor:
    """(dx, dy, dw, dh) deltas relative to rois → boxes clipped to max_shape (h, w); means are 0."""
    deltas = deltas * deltas.new_tensor(stds)
    centres = (rois[:, :2] + rois[:, 2:]) * 0.5
    sizes = rois[:, 2:] - rois[:, :2]
    limit = abs(math.log(WH_RATIO_CLIP))
    new_centres = centres + sizes * deltas[:, :2]
    new_sizes = sizes * deltas[:, 2:].clamp(min=-limit, max=limit).exp()
    boxes = torch.cat([new_centres - new_sizes * 0.5, new_centres + new_sizes * 0.5], dim=-1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=max_shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=max_shape[0])
    return boxes


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group; indices kept, by decreasing score (mmcv's batched_nms, offsets included)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    # Boxes of different groups are moved apart so one NMS never compares them.
    shifted = boxes + (groups.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes)))[:, None]
    if len(boxes) < NMS_SPLIT_THRESHOLD:
        return nms(shifted, scores, iou_threshold)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for group in torch.unique(groups):
        members = (groups == group).nonzero().view(-1)
        kept[members[nms(shifted[members], scores[members], iou_threshold)]] = True
    keep = kept.nonzero().view(-1)
    return keep[scores[keep].sort(descending=True)[1]]


def grid_anchors(feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> list[Tensor]:
    """Anchors of every FPN level: for each position (row-major) the 3 aspect ratios, centred on
    the position's top-left corner (centre offset 0), base size = stride, scale 8."""
    anchors = []
    for (height, width), stride in zip(feature_sizes, FPN_STRIDES):
        h_ratios = torch.tensor(ANCHOR_RATIOS, device=device).sqrt()
        widths = stride * (1 / h_ratios) * ANCHOR_SCALE
        heights = stride * h_ratios * ANCHOR_SCALE
        base = torch.stack([-0.5 * widths, -0.5 * heights, 0.5 * widths, 0.5 * heights], dim=-1)
        xs = torch.arange(width, device=device) * stride
        ys = torch.arange(height, device=device) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)], dim=-1)
        anchors.append((shifts[:, None, :] + base[None]).reshape(-1, 4))
    return anchors


# ----------------------------------------------------------------------------- network parts
class _ConvModule(nn.Module):
    """A bare convolution registered as `.conv`, matching mmcv ConvModule's key names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FeaturePyramid(nn.Module):
    """FPN: 1x1 laterals, nearest top-down addition, 3x3 outputs; P6 = max-pool(P5, 1, stride 2)."""

    def __init__(self, in_channels: Sequence[int] = (256, 512, 1024, 2048), out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(_ConvModule(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                                          mode="nearest")
        outputs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        outputs.append(nn.functional.max_pool2d(outputs[-1], 1, stride=2))
        return outputs


class RegionProposalHead(nn.Module):
    """RPN head shared by all levels: 3x3 conv + ReLU, then objectness (sigmoid) and box deltas."""

    def __init__(self, channels: int = 256, num_anchors: int = 3) -> None:
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [torch.relu(self.rpn_conv(f)) for f in features]
        return [self.rpn_cls(h) for h in hidden], [self.rpn_reg(h) for h in hidden]


class BoxHead(nn.Module):
    """One cascade stage's head (Shared2FCBBoxHead): two shared FCs, then class logits (81)
    and class-agnostic box deltas (4). fc_cls/fc_reg are registered first, as in mmdet."""

    def __init__(self, in_features: int = 256 * 7 * 7, hidden: int = 1024) -> None:
        super().__init__()
        self.fc_cls = nn.Linear(hidden, NUM_CLASSES + 1)
        self.fc_reg = nn.Linear(hidden, 4)
        self.shared_fcs = nn.ModuleList([nn.Linear(in_features, hidden), nn.Linear(hidden, hidden)])

    def forward(self, roi_features: Tensor) -> tuple[Tensor, Tensor]:
        x = roi_features.flatten(1)
        for fc in self.shared_fcs:
            x = torch.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class CascadeRoIHead(nn.Module):
    def __init__(self, num_stages: int = 3) -> None:
        super().__init__()
        self.bbox_head = nn.ModuleList(BoxHead() for _ in range(num_stages))


class _ResNetBackbone(nn.Module):
    """torchvision's ResNet-101 (its Bottleneck puts the stride on the 3x3 conv, mmdet's 'pytorch'
    style) without the classifier; returns C2-C5."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet101(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


# ----------------------------------------------------------------------------- the detector
class CascadeRCNN(nn.Module):
    """Cascade R-CNN R101-FPN, COCO classes; load weights with `load_cascade_rcnn`.

    Keep it in eval mode: BatchNorm uses its stored statistics, as mmdet's frozen backbone does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _ResNetBackbone()
        self.neck = FeaturePyramid()
        self.rpn_head = RegionProposalHead()
        self.roi_head = CascadeRoIHead()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # --- preprocessing (mmdet's test pipeline and data preprocessor)
    @staticmethod
    def rescaled_size(height: int, width: int, scale: tuple[int, int] = (1333, 800)) -> tuple[int, int]:
        """(new_h, new_w) of a keep-ratio resize fitting inside `scale` (mmcv.imrescale)."""
        factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
        return int(height * factor + 0.5), int(width * factor + 0.5)

    def _normalise(self, images_bgr: Sequence[np.ndarray], scale: tuple[int, int]
                   ) -> tuple[Tensor, list[tuple[int, int]], list[tuple[float, float]]]:
        tensors, shapes, factors = [], [], []
        for image in images_bgr:
            height, width = image.shape[:2]
            new_h, new_w = self.rescaled_size(height, width, scale)
            resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            rgb = torch.from_numpy(np.ascontiguousarray(resized[..., ::-1].transpose(2, 0, 1))).to(self.device)
            tensors.append((rgb.float() - self.pixel_mean) / self.pixel_std)
            shapes.append((new_h, new_w))
            factors.append((new_w / width, new_h / height))
        # zero padding (after normalisation) to a multiple of 32, common to the batch
        pad_h = max(math.ceil(t.shape[1] / 32) * 32 for t in tensors)
        pad_w = max(math.ceil(t.shape[2] / 32) * 32 for t in tensors)
        batch = torch.stack([nn.functional.pad(t, (0, pad_w - t.shape[2], 0, pad_h - t.shape[1])) for t in tensors])
        return batch, shapes, factors

    def preprocess(self, img_bgr: np.ndarray, scale: tuple[int, int] = (1333, 800)
                   ) -> tuple[Tensor, tuple[int, int], tuple[float, float]]:
        """One BGR uint8 frame → (inputs (1, 3, H', W'), img_shape (h, w) after resize, scale_factor (w, h))."""
        inputs, shapes, factors = self._normalise([img_bgr], scale)
        return inputs, shapes[0], factors[0]

    # --- network stages
    def extract_feat(self, inputs: Tensor) -> list[Tensor]:
        """FPN levels P2-P6."""
        return self.neck(self.backbone(torch.as_tensor(inputs, device=self.device)))

    def rpn(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Objectness logits (B, 3, h, w) and deltas (B, 12, h, w) per level."""
        return self.rpn_head(feats)

    def proposals_with_scores(self, feats: Sequence[Tensor], img_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """RPN proposals of the first image in `feats` and their objectness."""
        img_shape = (int(img_shape[0]), int(img_shape[1]))
        cls_scores, deltas = self.rpn(feats)
        anchors = grid_anchors([f.shape[2:] for f in cls_scores], self.device)
        level_scores, level_deltas, level_anchors, level_ids = [], [], [], []
        for level, (cls, delta, anchor) in enumerate(zip(cls_scores, deltas, anchors)):
            scores = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
            delta = delta[0].permute(1, 2, 0).reshape(-1, 4)
            if RPN_PRE_NMS < len(scores):
                scores, order = scores.sort(descending=True)
                scores, order = scores[:RPN_PRE_NMS], order[:RPN_PRE_NMS]
                delta, anchor = delta[order], anchor[order]
            level_scores.append(scores)
            level_deltas.append(delta)
            level_anchors.append(anchor)
            level_ids.append(torch.full_like(scores, level, dtype=torch.long))
        scores, ids = torch.cat(level_scores), torch.cat(level_ids)
        boxes = decode_deltas(torch.cat(level_anchors), torch.cat(level_deltas), (1.0, 1.0, 1.0, 1.0), img_shape)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # min_bbox_size 0
        if not valid.all():
            boxes, scores, ids = boxes[valid], scores[valid], ids[valid]
        keep = batched_nms(boxes, scores, ids, RPN_IOU)[:RPN_MAX]
        return boxes[keep], scores[keep]

    def proposals(self, feats: Sequence[Tensor], img_shape: tuple[int, int]) -> Tensor:
        """(N, 4) RPN proposals in resized-image coordinates, by decreasing objectness."""
        return self.proposals_with_scores(feats, img_shape)[0]

    def roi_stage(self, stage: int, feats: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (N, 81) and deltas (N, 4) of cascade stage `stage` for rois (N, 5: batch idx, box)."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / FINEST_SCALE + 1e-6)).clamp(min=0, max=3).long()
        pooled = rois.new_zeros(len(rois), feats[0].shape[1], 7, 7)
        for level in range(4):
            members = (levels == level).nonzero().view(-1)
            if len(members):
                pooled[members] = roi_align(feats[level], rois[members], output_size=7,
                                            spatial_scale=1 / FPN_STRIDES[level], sampling_ratio=0, aligned=True)
        return self.roi_head.bbox_head[stage](pooled)

    def refine(self, feats: Sequence[Tensor], proposals: Tensor, img_shape: tuple[int, int], batch_index: int = 0
               ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Run the cascade: the rois each stage saw and its logits and deltas."""
        img_shape = (int(img_shape[0]), int(img_shape[1]))
        rois = torch.cat([proposals.new_full((len(proposals), 1), batch_index), proposals], dim=1)
        all_rois, all_scores, all_deltas = [], [], []
        for stage in range(len(self.roi_head.bbox_head)):
            cls_score, deltas = self.roi_stage(stage, feats, rois)
            all_rois.append(rois)
            all_scores.append(cls_score)
            all_deltas.append(deltas)
            if stage < len(self.roi_head.bbox_head) - 1:  # class-agnostic: the label is not needed
                rois = torch.cat([rois[:, :1], decode_deltas(rois[:, 1:], deltas, STAGE_STDS[stage], img_shape)], 1)
        return all_rois, all_scores, all_deltas

    def detect(self, inputs: Tensor, img_shape: tuple[int, int], scale_factor: tuple[float, float],
               score_thr: float = 0.05, feats: Sequence[Tensor] | None = None, batch_index: int = 0
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Detections (≤ 100) of one image in original-image coordinates: (boxes, scores, labels)."""
        img_shape = (int(img_shape[0]), int(img_shape[1]))
        scale_factor = (float(scale_factor[0]), float(scale_factor[1]))
        if feats is None:
            feats = self.extract_feat(inputs)
        image_feats = [f[batch_index:batch_index + 1] for f in feats]
        proposals = self.proposals(image_feats, img_shape)
        if len(proposals) == 0:
            empty = proposals.new_zeros(0)
            return proposals.new_zeros(0, 4), empty, empty.long()
        rois, scores, deltas = self.refine(image_feats, proposals, img_shape)
        probabilities = torch.softmax(sum(scores) / len(scores), dim=-1)  # logits averaged over stages
        boxes = decode_deltas(rois[-1][:, 1:], deltas[-1], STAGE_STDS[-1], img_shape)
        boxes = boxes * boxes.new_tensor([1 / scale_factor[0], 1 / scale_factor[1]]).repeat(2)
        # every (box, class) pair above the threshold, background excluded, then per-class NMS
        class_scores = probabilities[:, :-1].reshape(-1)
        labels = torch.arange(NUM_CLASSES, device=boxes.device).repeat(len(boxes))
        box_of = torch.arange(len(boxes), device=boxes.device).repeat_interleave(NUM_CLASSES)
        valid = (class_scores > score_thr).nonzero().view(-1)
        candidates, class_scores, labels = boxes[box_of[valid]], class_scores[valid], labels[valid]
        keep = batched_nms(candidates, class_scores, labels, RCNN_IOU)[:RCNN_MAX]
        return candidates[keep], class_scores[keep], labels[keep]


def load_cascade_rcnn(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> CascadeRCNN:
    """The model-zoo checkpoint (dict with `state_dict` and `meta`), loaded safely and strictly, eval mode."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise VECError(f"Cascade R-CNN checkpoint {path} not found: download {CHECKPOINT_URL} into "
                       "obj_det_checkpoints/, or use the reference's box files, or set detector = none in config.cfg")
    checkpoint = load_torch_file(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    model = CascadeRCNN()
    if not isinstance(state, dict) or set(state) != set(model.state_dict()):
        raise VECError(f"{path} is not the MMDetection 2/3 Cascade R-CNN R101-FPN checkpoint; use {CHECKPOINT_NAME} "
                       "(the reference's 2018 mmdet v1 file has other conventions and is not supported)")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


class CascadeRCNNDetector:
    """Detector callable for the box pipeline: BGR frames → per-frame (N, 5) [x1, y1, x2, y2, score], all classes."""

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", batch_size: int = 4,
                 score_thr: float = 0.05, scale: tuple[int, int] = (1333, 800)) -> None:
        self._setup(load_cascade_rcnn(checkpoint_path, device), batch_size, score_thr, scale)

    @classmethod
    def from_model(cls, model: CascadeRCNN, device: str = "cpu", batch_size: int = 4, score_thr: float = 0.05,
                   scale: tuple[int, int] = (1333, 800)) -> "CascadeRCNNDetector":
        detector = cls.__new__(cls)
        detector._setup(model.to(device).eval(), batch_size, score_thr, scale)
        return detector

    def _setup(self, model: CascadeRCNN, batch_size: int, score_thr: float, scale: tuple[int, int]) -> None:
        self.model, self.batch_size, self.score_thr, self.scale = model, batch_size, score_thr, scale

    @torch.inference_mode()
    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = []
        for start in range(0, len(frames), self.batch_size):
            inputs, shapes, factors = self.model._normalise(frames[start:start + self.batch_size], self.scale)
            feats = self.model.extract_feat(inputs)  # the backbone runs once for the whole batch
            for i, (shape, factor) in enumerate(zip(shapes, factors)):
                boxes, scores, _ = self.model.detect(inputs, shape, factor, self.score_thr, feats=feats, batch_index=i)
                results.append(torch.cat([boxes, scores[:, None]], 1).float().cpu().numpy())
        return results
