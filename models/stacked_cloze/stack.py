"""G U-Nets as one module: their weights stacked per layer, their convolutions grouped.

U-Net g owns channel block g of every activation and of every weight; convolutions are grouped
(groups = number of U-Nets), and a BatchNorm2d over G·C channels is exactly G per-U-Net
BatchNorms, because BatchNorm statistics are per channel. The skip concatenation of the decoder
stays per U-Net. Calling the module runs all U-Nets together (the "grouped" execution);
`slot_tensors` gives each U-Net's views of the stacked tensors, which the other executions run
one U-Net at a time (one_unet.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.selfcomplete import FLOW_CHANNELS, RAW_CHANNELS, run_unet

# Parts of one U-Net, in the reference's order: the stack's attribute names.
UNET_PARTS = ("inc", "down1", "down2", "down3", "up1", "up2", "up3")


class StackedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over G blocks of C channels: G independent BatchNorms (statistics are per channel).

    Only `num_batches_tracked` differs: one counter per U-Net, shape (G,).
    """

    def __init__(self, groups: int, channels: int) -> None:
        super().__init__(groups * channels)
        self.num_batches_tracked = torch.zeros(groups, dtype=torch.long)


def _conv_bn_relu_twice(groups: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """G stacked DoubleConv blocks; indices 0..5 as the reference's `conv` Sequential."""
    return nn.Sequential(
        nn.Conv2d(groups * in_channels, groups * out_channels, kernel_size=3, padding=1, groups=groups),
        StackedBatchNorm2d(groups, out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(groups * out_channels, groups * out_channels, kernel_size=3, padding=1, groups=groups),
        StackedBatchNorm2d(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class _StackedDoubleConv(nn.Sequential):
    def __init__(self, groups: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _conv_bn_relu_twice(groups, in_channels, out_channels)


class _StackedInConv(nn.Sequential):
    def __init__(self, groups: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _StackedDoubleConv(groups, in_channels, out_channels)


class _StackedDown(nn.Module):
    def __init__(self, groups: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(kernel_size=2), _StackedDoubleConv(groups, in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.mpconv(x)


def cat_per_unet(skip: Tensor, up: Tensor, groups: int) -> Tensor:
    """Concatenate [skip, up] inside each U-Net's channel block: (B, G·Cs) + (B, G·Cu) → (B, G·(Cs+Cu)).

    Keeps channels_last inputs channels_last (the concatenation then runs over the last,
    contiguous dimension).
    """
    if groups == 1:
        return torch.cat([skip, up], dim=1)
    b, cs, h, w = skip.shape
    cu = up.shape[1]
    if skip.is_contiguous(memory_format=torch.channels_last) and not skip.is_contiguous():
        parts = [t.permute(0, 2, 3, 1).reshape(b, h, w, groups, c // groups) for t, c in ((skip, cs), (up, cu))]
        return torch.cat(parts, dim=4).reshape(b, h, w, cs + cu).permute(0, 3, 1, 2)
    parts = [t.reshape(b, groups, c // groups, h, w) for t, c in ((skip, cs), (up, cu))]
    return torch.cat(parts, dim=2).reshape(b, cs + cu, h, w)


class _StackedUp(nn.Module):
    def __init__(self, groups: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.groups = groups
        self.up = nn.ConvTranspose2d(groups * in_channels, groups * (in_channels // 2), kernel_size=3, stride=2,
                                     padding=1, output_padding=1, groups=groups)
        self.conv = _StackedDoubleConv(groups, in_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(cat_per_unet(skip, self.up(x), self.groups))


class _StackedOutConv(nn.Sequential):
    def __init__(self, groups: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(groups * in_channels, groups * out_channels, kernel_size=1, groups=groups)


class UNetStack(nn.Module):
    """G U-Nets (encoder, decoder) evaluated together; output heads are separate (raw: 3, flow: 2 channels).

    The first `n_raw` U-Nets (slots) complete raw patches, the other `n_flow` flows.
    """

    def __init__(self, groups: int, in_channels: int, nf: int, n_raw: int, n_flow: int) -> None:
        super().__init__()
        self.groups, self.nf, self.n_raw, self.n_flow = groups, nf, n_raw, n_flow
        self.inc = _StackedInConv(groups, in_channels, nf)
        self.down1 = _StackedDown(groups, nf, nf * 2)
        self.down2 = _StackedDown(groups, nf * 2, nf * 4)
        self.down3 = _StackedDown(groups, nf * 4, nf * 8)
        self.up1 = _StackedUp(groups, nf * 8, nf * 4)
        self.up2 = _StackedUp(groups, nf * 4, nf * 2)
        self.up3 = _StackedUp(groups, nf * 2, nf)
        self.outc_raw = _StackedOutConv(n_raw, nf, RAW_CHANNELS)
        if n_flow:
            self.outc_flow = _StackedOutConv(n_flow, nf, FLOW_CHANNELS)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """All U-Nets together: x holds U-Net g's input in channel block g; returns (raw, flow or None)."""
        return run_unet(x, self.inc, (self.down1, self.down2, self.down3), (self.up1, self.up2, self.up3), self._heads)

    def _heads(self, y: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.n_flow:
            return self.outc_raw(y), None
        raw, flow = y.split([self.n_raw * self.nf, self.n_flow * self.nf], dim=1)
        return self.outc_raw(raw), self.outc_flow(flow)

    def slot_tensors(self, detach: bool = False) -> list[dict[str, Tensor]]:
        """Each U-Net's parameters and BatchNorm statistics: per-slot views of the stacked tensors.

        detach: the parameters' views are new leaves (requires_grad as the parameter), sharing its memory.
        """
        views: list[dict[str, Tensor]] = [{} for _ in range(self.groups)]
        for name, tensor in (*self.named_parameters(), *self.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            slots = range(self.n_raw) if name.startswith("outc_raw.") else \
                range(self.n_raw, self.groups) if name.startswith("outc_flow.") else range(self.groups)
            source = tensor.detach() if detach else tensor
            for slot, part in zip(slots, source.split(tensor.shape[0] // len(slots))):
                views[slot][name] = part.requires_grad_() if detach and tensor.requires_grad else part
        return views

    def count_batch(self) -> None:
        """Train mode: one more batch in every U-Net's BatchNorm counters (their running statistics update in place)."""
        if self.training:
            for module in self.modules():
                if isinstance(module, StackedBatchNorm2d):
                    module.num_batches_tracked.add_(1)

    def head(self, slot: int) -> str:
        """The output head of U-Net `slot`."""
        return "outc_raw" if slot < self.n_raw else "outc_flow"
