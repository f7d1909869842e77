"""FlowNet2's custom layers in plain PyTorch (the reference has them as CUDA kernels only).

Each follows its kernel's arithmetic, borders included, and runs on any device.

Under torch.autocast (FlowNet2 in fp16 / bf16) the three layers still compute in float32, each
for a reason given where it does so; outside autocast (fp32) they run exactly as before.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn


def _float32(*tensors: Tensor) -> tuple[contextlib.AbstractContextManager, tuple[Tensor, ...]]:
    """Under autocast: a context that turns it off and the tensors in float32; else nothing changes."""
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext(), tensors
    return torch.autocast(device_type, enabled=False), tuple(t.float() for t in tensors)


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
        # float32 under autocast: each output sums C = 256 products of features before dividing by C,
        # which overflows fp16 (max 65504) for features of ~16 and more; the layer is ~6 % of the time.
        context, (input1, input2) = _float32(input1, input2)
        with context:
            return self._correlate(input1, input2)

    def _correlate(self, input1: Tensor, input2: Tensor) -> Tensor:
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
        padded_w = second.shape[-1]
        device = input1.device
        rows = border + stride1 * torch.arange(out_h, device=device)  # output grid in padded coordinates
        cols = border + stride1 * torch.arange(out_w, device=device)
        shifts = stride2 * torch.arange(-radius, radius + 1, device=device)
        out = input1.new_zeros(b, out_h, out_w, size, size)
        # Rows per chunk so the (rows, size, padded width) products stay near 16M floats.
        chunk = max(1, (1 << 24) // max(1, b * out_w * size * padded_w))
        for j in range(-kernel_radius, kernel_radius + 1):
            for i in range(-kernel_radius, kernel_radius + 1):
                # for output column x and horizontal displacement dx: column of the second map
                columns = cols[:, None] + i + shifts[None, :]  # (ow, size)
                for r0 in range(0, out_h, chunk):
                    r = rows[r0:r0 + chunk]
                    anchor = first[:, :, r + j][:, :, :, cols + i]  # (B, C, n, ow)
                    bands = second[:, :, r[:, None] + j + shifts[None, :]]  # (B, C, n, size, W')
                    n = len(r)
                    # one matrix product per output row compares every column pair; the needed
                    # diagonals are picked afterwards (much faster than gathering first)
                    products = torch.bmm(anchor.permute(0, 2, 3, 1).reshape(b * n, out_w, c),
                                         bands.permute(0, 2, 1, 3, 4).reshape(b * n, c, size * padded_w))
                    products = products.view(b, n, out_w, size, padded_w)
                    index = columns.reshape(1, 1, out_w, 1, size).expand(b, n, out_w, size, size)
                    out[:, r0:r0 + n] += products.gather(4, index)
        out = out.reshape(b, out_h, out_w, size * size).permute(0, 3, 1, 2)
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
        # float32 under autocast: the sampling positions are pixel indices (up to 511) plus the flow, and
        # bf16 holds integers exactly only up to 256 (fp16: fractions of 1/4 px at 512) - the warp would
        # jump by whole pixels. The result comes back in the input's dtype (float32 inside FlowNet2).
        context, (input32, flow) = _float32(input, flow)
        with context:
            return self._warp(input32, flow).to(input.dtype)

    def _warp(self, input: Tensor, flow: Tensor) -> Tensor:
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
        # float32 under autocast: FlowNet2 takes norms of flows in pixels, whose squares overflow fp16
        # above 256 px; in float32 it costs nothing measurable (one element-wise pass).
        context, (x,) = _float32(x)
        with context:
            return x.pow(self.norm_deg).sum(dim=1, keepdim=True).pow(1.0 / self.norm_deg)
