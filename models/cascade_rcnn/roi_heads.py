"""The cascade of three RoI stages (mmdet's CascadeRoIHead at test time)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from models.cascade_rcnn.box_ops import batched_nms, clip_shapes, decode_deltas
from models.cascade_rcnn.rpn import FPN_STRIDES

NUM_CLASSES = 80  # COCO; the classifier has one more output for background (last)
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
FINEST_SCALE = 56
NMS_IOU, MAX_DETECTIONS = 0.5, 100


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


def pool_rois(features: Sequence[Tensor], rois: Tensor) -> Tensor:
    """RoIAlign 7x7 of each roi (N, 5: batch index, box) from the FPN level its size maps to (P2-P5).

    Sampled in the rois' dtype (float32), as mmcv's RoIAlign does under autocast: features a network
    made in half are cast first (a no-op in float32)."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / FINEST_SCALE + 1e-6)).clamp(min=0, max=3).long()
    pooled = rois.new_zeros(len(rois), features[0].shape[1], 7, 7)
    for level in range(4):
        members = (levels == level).nonzero().view(-1)
        if len(members):
            pooled[members] = roi_align(features[level].to(rois.dtype), rois[members], output_size=7,
                                        spatial_scale=1 / FPN_STRIDES[level], sampling_ratio=0, aligned=True)
    return pooled


class CascadeRoIHead(nn.Module):
    """Three stages; each refines the boxes the next one sees, and their class logits are averaged."""

    def __init__(self, num_stages: int = 3) -> None:
        super().__init__()
        self.bbox_head = nn.ModuleList(BoxHead() for _ in range(num_stages))

    def stage(self, stage: int, features: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (N, 81) and deltas (N, 4) of stage `stage` for rois (N, 5: batch index, box)."""
        return self.bbox_head[stage](pool_rois(features, rois))

    def refine(self, features: Sequence[Tensor], proposals: Tensor, img_shape: tuple[int, int],
               batch_index: int = 0) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Run the cascade on one image's proposals: the rois each stage saw and its logits and deltas."""
        rois = torch.cat([proposals.new_full((len(proposals), 1), batch_index), proposals], dim=1)
        return self._cascade(features, rois, img_shape)

    def refine_batch(self, features: Sequence[Tensor], proposals: Sequence[Tensor],
                     img_shapes: Sequence[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """`refine` of every image of a batch at once (proposals and img_shape per image): the rois of all
        images, image by image, go through each stage together, as in mmdet's CascadeRoIHead. Each roi
        is pooled from its own image (column 0) and clipped to its own image's shape."""
        rois = torch.cat([torch.cat([p.new_full((len(p), 1), i), p], dim=1) for i, p in enumerate(proposals)])
        return self._cascade(features, rois, clip_shapes(img_shapes, [len(p) for p in proposals], rois.device))

    def _cascade(self, features: Sequence[Tensor], rois: Tensor, max_shape: tuple[int, int] | Tensor
                 ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        all_rois, all_scores, all_deltas = [], [], []
        for stage in range(len(self.bbox_head)):
            cls_score, deltas = self.stage(stage, features, rois)
            all_rois.append(rois)
            all_scores.append(cls_score)
            all_deltas.append(deltas)
            if stage < len(self.bbox_head) - 1:  # class-agnostic: the label is not needed
                rois = torch.cat([rois[:, :1], decode_deltas(rois[:, 1:], deltas, STAGE_STDS[stage], max_shape)], 1)
        return all_rois, all_scores, all_deltas

    @staticmethod
    def detections(rois: Tensor, cls_scores: Sequence[Tensor], deltas: Tensor, img_shape: tuple[int, int],
                   scale_factor: tuple[float, float], score_thr: float) -> tuple[Tensor, Tensor, Tensor]:
        """The last stage's boxes with the stage-averaged class scores → per-class NMS 0.5, top 100,
        in original-image coordinates: (boxes, scores, labels). Scores and boxes are computed in the
        rois' dtype (float32) whatever dtype the heads gave under autocast."""
        cls_scores = [s.to(rois.dtype) for s in cls_scores]
        probabilities = torch.softmax(sum(cls_scores) / len(cls_scores), dim=-1)
        boxes = decode_deltas(rois[:, 1:], deltas, STAGE_STDS[-1], img_shape)
        boxes = boxes * boxes.new_tensor([1 / scale_factor[0], 1 / scale_factor[1]]).repeat(2)
        # every (box, class) pair above the threshold, background excluded
        class_scores = probabilities[:, :-1].reshape(-1)
        labels = torch.arange(NUM_CLASSES, device=boxes.device).repeat(len(boxes))
        box_of = torch.arange(len(boxes), device=boxes.device).repeat_interleave(NUM_CLASSES)
        valid = (class_scores > score_thr).nonzero().view(-1)
        candidates, class_scores, labels = boxes[box_of[valid]], class_scores[valid], labels[valid]
        keep = batched_nms(candidates, class_scores, labels, NMS_IOU)[:MAX_DETECTIONS]
        return candidates[keep], class_scores[keep], labels[keep]

    def predict(self, features: Sequence[Tensor], proposals: Tensor, img_shape: tuple[int, int],
                scale_factor: tuple[float, float], score_thr: float = 0.05, batch_index: int = 0
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Detections of one image from its proposals."""
        if len(proposals) == 0:
            empty = proposals.new_zeros(0)
            return proposals.new_zeros(0, 4), empty, empty.long()
        rois, cls_scores, deltas = self.refine(features, proposals, img_shape, batch_index)
        return self.detections(rois[-1], cls_scores, deltas[-1], img_shape, scale_factor, score_thr)

    def predict_batch(self, features: Sequence[Tensor], proposals: Sequence[Tensor],
                      img_shapes: Sequence[tuple[int, int]], scale_factors: Sequence[tuple[float, float]],
                      score_thr: float = 0.05) -> list[tuple[Tensor, Tensor, Tensor]]:
        """`predict` of every image of a batch: the cascade runs once over all images' rois (one RoIAlign
        per level and one head call per stage for the batch); NMS and the top 100 stay per image."""
        counts = [len(p) for p in proposals]
        if sum(counts) == 0:
            empty = proposals[0].new_zeros(0)
            return [(proposals[0].new_zeros(0, 4), empty, empty.long()) for _ in proposals]
        rois, cls_scores, deltas = self.refine_batch(features, proposals, img_shapes)
        per_image = zip(rois[-1].split(counts), zip(*(s.split(counts) for s in cls_scores)),
                        deltas[-1].split(counts), img_shapes, scale_factors)
        results = []
        for image_rois, image_scores, image_deltas, img_shape, scale_factor in per_image:
            if len(image_rois) == 0:
                empty = image_rois.new_zeros(0)
                results.append((image_rois.new_zeros(0, 4), empty, empty.long()))
            else:
                results.append(self.detections(image_rois, image_scores, image_deltas, img_shape, scale_factor,
                                               score_thr))
        return results
