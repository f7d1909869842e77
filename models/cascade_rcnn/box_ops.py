"""Box arithmetic shared by the RPN and the cascade stages (mmdet's DeltaXYWHBBoxCoder and batched NMS)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import nms

WH_RATIO_CLIP = 16 / 1000
NMS_SPLIT_THRESHOLD = 10000


def clip_shapes(img_shapes: Sequence[tuple[int, int]], counts: Sequence[int], device: torch.device | str
                ) -> tuple[int, int] | Tensor:
    """`decode_deltas`' max_shape for rois of several images, `counts[i]` of them from image i in order:
    the shared (h, w) when every image has the same, else each roi's own (N, 2)."""
    if len(set(img_shapes)) == 1:
        return img_shapes[0]
    return torch.tensor(img_shapes, device=device).repeat_interleave(torch.tensor(counts, device=device), dim=0)


def decode_deltas(rois: Tensor, deltas: Tensor, stds: Sequence[float], max_shape: tuple[int, int] | Tensor) -> Tensor:
    """(dx, dy, dw, dh) deltas relative to rois → boxes clipped to max_shape (h, w); means are 0.

    `max_shape` is one (h, w) for all rois, or a tensor (N, 2) of each roi's (h, w) when the rois come
    from images of different sizes. Computed in the rois' dtype (float32): deltas a network made under
    autocast (half) are cast first."""
    deltas = deltas.to(rois.dtype)
    deltas = deltas * deltas.new_tensor(stds)
    centres = (rois[:, :2] + rois[:, 2:]) * 0.5
    sizes = rois[:, 2:] - rois[:, :2]
    limit = abs(math.log(WH_RATIO_CLIP))
    new_centres = centres + sizes * deltas[:, :2]
    new_sizes = sizes * deltas[:, 2:].clamp(min=-limit, max=limit).exp()
    boxes = torch.cat([new_centres - new_sizes * 0.5, new_centres + new_sizes * 0.5], dim=-1)
    if isinstance(max_shape, Tensor):
        limits = max_shape.to(boxes.dtype)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0).minimum(limits[:, 1:2])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0).minimum(limits[:, 0:1])
    else:
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
