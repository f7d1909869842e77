"""The region proposal network: head, anchors and proposal decoding (mmdet's RPNHead at test time)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from models.cascade_rcnn.box_ops import batched_nms, clip_shapes, decode_deltas

FPN_STRIDES = (4, 8, 16, 32, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SCALE = 8
PRE_NMS, NMS_IOU, MAX_PROPOSALS = 1000, 0.7, 1000


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


class RegionProposalHead(nn.Module):
    """RPN head shared by all levels: 3x3 conv + ReLU, then objectness (sigmoid) and box deltas."""

    def __init__(self, channels: int = 256, num_anchors: int = 3) -> None:
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Objectness logits (B, 3, h, w) and deltas (B, 12, h, w) per level."""
        hidden = [torch.relu(self.rpn_conv(f)) for f in features]
        return [self.rpn_cls(h) for h in hidden], [self.rpn_reg(h) for h in hidden]

    def decode(self, cls_scores: Sequence[Tensor], deltas: Sequence[Tensor], img_shape: tuple[int, int],
               batch_index: int = 0) -> tuple[Tensor, Tensor]:
        """Head outputs of one image → proposals (N, 4) and their objectness, by decreasing objectness:
        per level the top 1000 anchors, decoded, empty boxes dropped, NMS 0.7 per level, top 1000."""
        image = slice(batch_index, batch_index + 1)
        return self.decode_batch([c[image] for c in cls_scores], [d[image] for d in deltas], [img_shape])[0]

    def decode_batch(self, cls_scores: Sequence[Tensor], deltas: Sequence[Tensor],
                     img_shapes: Sequence[tuple[int, int]]) -> list[tuple[Tensor, Tensor]]:
        """`decode` of every image of the head outputs (img_shape per image). The per-level top 1000
        and the box decoding run on all images at once (row by row, the same arithmetic); dropping empty
        boxes and NMS, per image. Scores and boxes in the anchors' float32, whatever dtype the head gave
        under autocast (in half, sigmoid scores tie massively and the top-1000 cut would become arbitrary)."""
        batch = cls_scores[0].shape[0]
        img_shapes = [(int(height), int(width)) for height, width in img_shapes]
        anchors = grid_anchors([c.shape[2:] for c in cls_scores], cls_scores[0].device)
        level_scores, level_deltas, level_anchors, level_ids = [], [], [], []
        for level, (cls, delta, anchor) in enumerate(zip(cls_scores, deltas, anchors)):
            scores = cls.to(anchor.dtype).permute(0, 2, 3, 1).reshape(batch, -1).sigmoid()
            delta = delta.to(anchor.dtype).permute(0, 2, 3, 1).reshape(batch, -1, 4)
            anchor = anchor.expand(batch, -1, -1)
            if PRE_NMS < scores.shape[1]:
                scores, order = scores.sort(dim=1, descending=True)
                scores, order = scores[:, :PRE_NMS], order[:, :PRE_NMS, None].expand(-1, -1, 4)
                delta, anchor = delta.gather(1, order), anchor.gather(1, order)
            level_scores.append(scores)
            level_deltas.append(delta)
            level_anchors.append(anchor)
            level_ids.append(torch.full(scores.shape[1:], level, dtype=torch.long, device=scores.device))
        scores, ids = torch.cat(level_scores, 1), torch.cat(level_ids)
        per_image = scores.shape[1]
        boxes = decode_deltas(torch.cat(level_anchors, 1).reshape(-1, 4), torch.cat(level_deltas, 1).reshape(-1, 4),
                              (1.0, 1.0, 1.0, 1.0), clip_shapes(img_shapes, [per_image] * batch, scores.device)
                              ).view(batch, per_image, 4)
        results = []
        for image_boxes, image_scores in zip(boxes, scores):
            image_ids = ids
            # empty boxes dropped (min_bbox_size 0)
            valid = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
            if not valid.all():
                image_boxes, image_scores, image_ids = image_boxes[valid], image_scores[valid], image_ids[valid]
            keep = batched_nms(image_boxes, image_scores, image_ids, NMS_IOU)[:MAX_PROPOSALS]
            results.append((image_boxes[keep], image_scores[keep]))
        return results

    def proposals(self, features: Sequence[Tensor], img_shape: tuple[int, int], batch_index: int = 0
                  ) -> tuple[Tensor, Tensor]:
        """Proposals of image `batch_index` of `features` and their objectness."""
        cls_scores, deltas = self(features)
        return self.decode(cls_scores, deltas, img_shape, batch_index)
