"""FlowNet2's custom layers in plain PyTorch (the reference has them as CUDA kernels only).

Each follows its kernel's arithmetic, borders included, and runs on any device.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Correlation(nn.Module):
    """Correlation layer of FlowNetC: compares each feature vector of the first map with
    those of the second map in a (2·max_displacement/stride2 + 1)² neighbourhood.

    Output channel (dy, dx) (row-major over the displacement grid) holds, for every output
    position, the sum over channels and the kernel window of products, divided by
    kernel_size²·C, as the CUDA kernel computes it.
    """

    def __init__(self, pad_size: int = 20, kernel_size: int = 1, max_displacement: int = 20, stride1: int = 1,
                 stride2: int = 2, corr_multiply: int = 1) -> None:
        super().__init__()
        self.pad_size, self.kernel_size, self.max_displacement = pad_size, kernel_size, max_displacement
        self.stride1, self.stride2, self.corr_multiply = stride1, stride2, corr_multiply

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        b, c, h, w = input1.shape
        pad, stride1, stride2 = self.pad_size, self.stride1, self.stride2
        kernel_radius = (self.kernel_size - 1) // 2
        border = self.max_displacement + kernel_radius
        out_h = math.ceil((h + 2 * pad - 2 * border) / stride1)
        out_w = math.ceil((w + 2 * pad - 2 * border) / stride1)
        radius = self.max_displacement // stride2
        size = 2 * radius + 1
        first = nn.functional.pad(input1, (pad, pad, pad, pad))
        second = nn.functional.pad(input2, (pad, pad, pad, pad))
        device = input1.device
        rows = border + stride1 * torch.arange(out_h, device=device)  # output grid in padded coordinates
        cols = border + stride1 * torch.arange(out_w, device=device)
        shifts = stride2 * torch.arange(-radius, radius + 1, device=device)
        out = input1.new_zeros(b, size * size, out_h, out_w)
        for j in range(-kernel_radius, kernel_radius + 1):
            for i in range(-kernel_radius, kernel_radius + 1):
                anchor = first[:, :, rows + j][:, :, :, cols + i]  # (B, C, oh, ow)
                # columns of the second map for every horizontal displacement: (size, ow)
                shifted_cols = cols[None, :] + i + shifts[:, None]
                for row, dy in enumerate(shifts.tolist()):
                    band = second[:, :, rows + j + dy]  # (B, C, oh, W + 2 pad)
                    candidates = band[:, :, :, shifted_cols]  # (B, C, oh, size, ow)
                    out[:, row * size:(row + 1) * size] += torch.einsum("bchw,bchdw->bdhw", anchor, candidates)
        return out / (self.kernel_size ** 2 * c)


class Resample2d(nn.Module):
    """Bilinear warp of `input` by `flow` (x then y displacement, in pixels).

    Neighbour indices are clamped to the image while the weights come from the unclamped
    position, as in the CUDA kernel; kernel_size > 1 sums a kernel_size² patch of such samples.
    """

    def __init__(self, kernel_size: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, input: Tensor, flow: Tensor) -> Tensor:
        b, c, h, w = input.shape
        ys, xs = torch.meshgrid(torch.arange(h, device=input.device, dtype=flow.dtype),
                                torch.arange(w, device=input.device, dtype=flow.dtype), indexing="ij")
        x = xs + flow[:, 0]
        y = ys + flow[:, 1]
        x0, y0 = torch.floor(x), torch.floor(y)
        alpha, beta = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
        left, right = x0.long().clamp(0, w - 1), (x0.long() + 1).clamp(0, w - 1)
        top, bottom = y0.long().clamp(0, h - 1), (y0.long() + 1).clamp(0, h - 1)
        flat = input.reshape(b, c, h * w)

        def sample(yy: Tensor, xx: Tensor) -> Tensor:
            index = ((yy + fy).clamp(max=h - 1) * w + (xx + fx).clamp(max=w - 1)).reshape(b, 1, h * w)
            return flat.gather(2, index.expand(b, c, h * w)).reshape(b, c, h, w)

        out = torch.zeros_like(input)
        for fy in range(self.kernel_size):
            for fx in range(self.kernel_size):
                out = out + ((1 - alpha) * (1 - beta) * sample(top, left) + alpha * (1 - beta) * sample(top, right)
                             + (1 - alpha) * beta * sample(bottom, left) + alpha * beta * sample(bottom, right))
        return out


class ChannelNorm(nn.Module):
    """L2 norm over channels, keepdim: (B, C, H, W) → (B, 1, H, W)."""

    def __init__(self, norm_deg: int = 2) -> None:
        super().__init__()
        self.norm_deg = norm_deg

    def forward(self, x: Tensor) -> Tensor:
        return x.pow(self.norm_deg).sum(dim=1, keepdim=True).pow(1.0 / self.norm_deg)
