"""One U-Net of a stack, as functions on its views of the stacked tensors (`UNetStack.slot_tensors`).

What the sequential, streams and threads executions run for each U-Net: the same operations as
the reference's modules, in run_unet's layer order. In eval mode on a CPU each convolution, its
BatchNorm and its ReLU are one oneDNN call; in training, the transposed convolutions' weight
gradient comes from the adjoint strided convolution (upsample.py).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from models.selfcomplete import run_unet
from models.stacked_cloze.stack import UNetStack
from models.stacked_cloze.upsample import upsample


def run_one(stack: UNetStack, views: dict[str, Tensor], x: Tensor, head: str) -> Tensor:
    """One U-Net of `stack` (its slot's `views`, output head `head`) on its input x."""
    v = views
    bn = stack.inc.conv.conv[1]  # every BatchNorm here has the same momentum and eps
    fused = fused_inference(x, stack.training)

    def double_conv(x: Tensor, prefix: str) -> Tensor:
        for conv, norm in ((0, 1), (3, 4)):
            weight, bias = v[f"{prefix}.{conv}.weight"], v[f"{prefix}.{conv}.bias"]
            mean, var = v[f"{prefix}.{norm}.running_mean"], v[f"{prefix}.{norm}.running_var"]
            gamma, beta = v[f"{prefix}.{norm}.weight"], v[f"{prefix}.{norm}.bias"]
            if fused:  # eval BatchNorm is affine: folded into the convolution, ReLU fused in (one pass)
                x = torch.ops.mkldnn._convolution_pointwise(
                    x, *fold_batchnorm(weight, bias, mean, var, gamma, beta, bn.eps), [1, 1], [1, 1], [1, 1], 1,
                    "relu", [None], "")
                continue
            x = F.conv2d(x, weight, bias, padding=1)
            x = F.batch_norm(x, mean, var, gamma, beta, stack.training, bn.momentum, bn.eps)
            x = F.relu(x, inplace=True)
        return x

    def down(level: int) -> Callable[[Tensor], Tensor]:  # the reference's Down: max-pool, double conv
        return lambda x: double_conv(F.max_pool2d(x, 2), f"down{level}.mpconv.1.conv")

    def up(level: int) -> Callable[[Tensor, Tensor], Tensor]:  # Up: upsample, [skip, up] concatenated, double conv
        def block(y: Tensor, skip: Tensor) -> Tensor:
            upsampled = upsample(y, v[f"up{level}.up.weight"], v[f"up{level}.up.bias"])
            return double_conv(torch.cat([skip, upsampled], dim=1), f"up{level}.conv.conv")
        return block

    return run_unet(x, lambda x: double_conv(x, "inc.conv.conv"), [down(1), down(2), down(3)],
                    [up(1), up(2), up(3)], lambda y: F.conv2d(y, v[f"{head}.conv.weight"], v[f"{head}.conv.bias"]))


def fold_batchnorm(weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, beta: Tensor,
                   eps: float) -> tuple[Tensor, Tensor]:
    """A convolution's weight and bias with the eval-mode BatchNorm after it folded in (it is affine)."""
    scale = gamma * torch.rsqrt(var + eps)
    return weight * scale.view(-1, 1, 1, 1), (bias - mean) * scale + beta


def fused_inference(x: Tensor, training: bool) -> bool:
    """Eval-mode float32 inference on a CPU with oneDNN: convolution, BatchNorm and ReLU as one oneDNN call."""
    return (not training and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))
