"""The cloze networks of VEC (docs/method.md §5).

A video event is a cube of `tot_raw_num` patches (time-major BGR channels) and its
optical flow. For each erased position i, one U-Net completes the erased raw patch
from the remaining ones ("visual cloze test") and, where position i has a flow patch,
a second U-Net completes that flow from the same input.

Module names (`inc0`, `down01`, `up_of23`, `outc_of` ...) and their registration order
are the reference's, so checkpoints trained by the reference code load unchanged.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch
from torch import Tensor, nn

RAW_CHANNELS = 3  # BGR
FLOW_CHANNELS = 2  # (u, v)

_Out = TypeVar("_Out")


class DoubleConv(nn.Sequential):
    """(3x3 conv → BatchNorm → ReLU) twice; the basic U-Net block."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class InConv(nn.Sequential):
    """First block of the encoder: changes the channel count only."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels)


class Down(nn.Module):
    """Encoder step: 2x2 max-pool then a double conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(kernel_size=2), DoubleConv(in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.mpconv(x)


class Up(nn.Module):
    """Decoder step: transposed conv to twice the size, concatenate the skip, double conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=3, stride=2, padding=1,
                                     output_padding=1)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class OutConv(nn.Sequential):
    """1x1 conv to the output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)


def run_unet(x: Tensor, inc: Callable[[Tensor], Tensor], downs: Sequence[Callable[[Tensor], Tensor]],
             ups: Sequence[Callable[[Tensor, Tensor], Tensor]], outc: Callable[[Tensor], _Out]) -> _Out:
    """The U-Net's layer order, the one place it is written: the input block, each encoder step on
    the previous output, each decoder step on the previous output and the encoder output of its size
    (deepest first), then the output head.

    The blocks are callables, so every way of running a U-Net runs this: the modules above, the
    stacked network's grouped modules and its per-U-Net functions (models/stacked_cloze/).
    """
    skips = [inc(x)]
    for down in downs:
        skips.append(down(skips[-1]))
    y = skips.pop()
    for up in ups:
        y = up(y, skips.pop())
    return outc(y)


class _UNetNames:
    """Attribute names of one U-Net's parts inside a cloze network."""

    def __init__(self, inc: str, downs: tuple[str, str, str], ups: tuple[str, str, str], outc: str) -> None:
        self.inc, self.downs, self.ups, self.outc = inc, downs, ups, outc


class _ClozeNet(nn.Module):
    """Shared structure of `SelfCompleteNetFull` and `SelfCompleteNet4`.

    Subclasses only say how the flow U-Nets are named and which one serves a position.
    """

    def __init__(self, features_root: int, tot_raw_num: int, tot_of_num: int, border_mode: str,
                 rawRange: int | None, useFlow: bool, padding: bool, flow_unet_names: list[_UNetNames]) -> None:
        super().__init__()
        if tot_of_num > tot_raw_num:
            raise ValueError("tot_of_num cannot exceed tot_raw_num")
        if tot_raw_num > 5:
            raise ValueError("the cloze networks have U-Nets for at most 5 erased positions")
        if border_mode in ("predict", "elasticPredict"):
            raw_center, of_center = tot_raw_num - 1, tot_of_num - 1
        else:
            raw_center, of_center = (tot_raw_num - 1) // 2, (tot_of_num - 1) // 2
        if rawRange is None:
            self.rawRange = range(tot_raw_num)
        else:
            position = rawRange + tot_raw_num if rawRange < 0 else rawRange
            if not 0 <= position < tot_raw_num:
                raise ValueError(f"rawRange {rawRange} is outside 0..{tot_raw_num - 1}")
            self.rawRange = range(position, position + 1)
        self.tot_raw_num = tot_raw_num
        self.tot_of_num = tot_of_num
        # Flow patch j sits at raw position j + raw_of_offset (both contexts end at the current frame).
        self.raw_of_offset = raw_center - of_center
        self.useFlow = useFlow
        self.padding = padding

        in_channels = RAW_CHANNELS * (tot_raw_num if padding else tot_raw_num - 1)
        nf = features_root
        raw_names = [_UNetNames(f"inc{i}", (f"down{i}1", f"down{i}2", f"down{i}3"),
                                (f"up{i}1", f"up{i}2", f"up{i}3"), f"outc{i}") for i in range(5)]
        self._raw_unets = raw_names
        self._flow_unets = flow_unet_names if useFlow else []
        # Encoders of all U-Nets of a kind first, then their decoders: the reference's order.
        for group, out_channels in ((raw_names, RAW_CHANNELS), (self._flow_unets, FLOW_CHANNELS)):
            for names in group:
                setattr(self, names.inc, InConv(in_channels, nf))
                for level, name in enumerate(names.downs):
                    setattr(self, name, Down(nf * 2 ** level, nf * 2 ** (level + 1)))
            for names in group:
                for level, name in enumerate(names.ups):
                    setattr(self, name, Up(nf * 2 ** (3 - level), nf * 2 ** (2 - level)))
                setattr(self, names.outc, OutConv(nf, out_channels))

    def _run_unet(self, names: _UNetNames, x: Tensor) -> Tensor:
        return run_unet(x, getattr(self, names.inc), [getattr(self, name) for name in names.downs],
                        [getattr(self, name) for name in names.ups], getattr(self, names.outc))

    def _flow_unet_for(self, of_index: int) -> _UNetNames:
        raise NotImplementedError

    def forward(self, x: Tensor, x_of: Tensor) -> tuple[Tensor | list, Tensor, Tensor | list, Tensor]:
        """Complete every erased position.

        x: (B, 3·tot_raw_num, H, W) raw patches; x_of: (B, 2·tot_of_num, H, W) flows.
        Returns (of_outputs, raw_outputs, of_targets, raw_targets), each concatenated over
        the erased positions along channels; the flow pair is an empty list when no
        position has a flow U-Net (the reference's convention).
        """
        raw_outputs, raw_targets, of_outputs, of_targets = [], [], [], []
        c = RAW_CHANNELS
        for i in self.rawRange:
            if self.padding:
                incomplete = x.clone()
                incomplete[:, i * c:(i + 1) * c] = 0
            else:
                incomplete = torch.cat([x[:, :i * c], x[:, (i + 1) * c:]], dim=1)
            raw_targets.append(x[:, i * c:(i + 1) * c])
            raw_outputs.append(self._run_unet(self._raw_unets[i], incomplete))

            of_index = i - self.raw_of_offset
            if self.useFlow and 0 <= of_index < self.tot_of_num:
                of_outputs.append(self._run_unet(self._flow_unet_for(of_index), incomplete))
                of_targets.append(x_of[:, of_index * FLOW_CHANNELS:(of_index + 1) * FLOW_CHANNELS])

        if of_outputs:
            of_outputs, of_targets = torch.cat(of_outputs, dim=1), torch.cat(of_targets, dim=1)
        return of_outputs, torch.cat(raw_outputs, dim=1), of_targets, torch.cat(raw_targets, dim=1)


class SelfCompleteNetFull(_ClozeNet):
    """5 raw patches and 5 flows ("5raw5of"): one flow U-Net per erased position."""

    def __init__(self, features_root: int = 32, tot_raw_num: int = 5, tot_of_num: int = 5,
                 border_mode: str = "predict", rawRange: int | None = None, useFlow: bool = True,
                 padding: bool = True) -> None:
        names = [_UNetNames(f"inc_of{j}", (f"down_of{j}1", f"down_of{j}2", f"down_of{j}3"),
                            (f"up_of{j}1", f"up_of{j}2", f"up_of{j}3"), f"outc_of{j}") for j in range(5)]
        super().__init__(features_root, tot_raw_num, tot_of_num, border_mode, rawRange, useFlow, padding, names)

    def _flow_unet_for(self, of_index: int) -> _UNetNames:
        return self._flow_unets[of_index]


class SelfCompleteNet4(_ClozeNet):
    """5 raw patches and 1 flow ("5raw1of"): a single flow U-Net (context_of_num = 0)."""

    def __init__(self, features_root: int = 32, tot_raw_num: int = 5, tot_of_num: int = 1,
                 border_mode: str = "predict", rawRange: int | None = None, useFlow: bool = True,
                 padding: bool = True) -> None:
        names = [_UNetNames("inc_of", ("down_of1", "down_of2", "down_of3"), ("up_of1", "up_of2", "up_of3"), "outc_of")]
        super().__init__(features_root, tot_raw_num, tot_of_num, border_mode, rawRange, useFlow, padding, names)

    def _flow_unet_for(self, of_index: int) -> _UNetNames:
        return self._flow_unets[0]


def build_cloze_network(features_root: int, tot_raw_num: int, tot_of_num: int, border_mode: str,
                        raw_range: int | None, use_flow: bool, padding: bool) -> _ClozeNet:
    """The network the reference picks for a context: Net4 for one flow, Full for five."""
    if tot_raw_num != 5 or tot_of_num not in (1, 5):
        raise ValueError(f"no cloze network for {tot_raw_num} raw patches and {tot_of_num} flows (need 5 and 1 or 5)")
    cls = SelfCompleteNet4 if tot_of_num == 1 else SelfCompleteNetFull
    return cls(features_root=features_root, tot_raw_num=tot_raw_num, tot_of_num=tot_of_num, border_mode=border_mode,
               rawRange=raw_range, useFlow=use_flow, padding=padding)


def strip_data_parallel_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys of a state dict saved through nn.DataParallel, without the 'module.' prefix."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
