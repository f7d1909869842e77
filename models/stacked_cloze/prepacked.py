"""The grouped stack frozen for CPU inference: what a frozen graph would run, written out by hand.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the convolution before it;
the ReLU after it is fused into the same oneDNN call; and each weight is laid out once, in the
blocked format oneDNN's kernels read, instead of being reordered in every call. The two output
heads (3 raw channels, 2 flow channels per U-Net) become one grouped 1x1 convolution (the flow
heads padded with a zero channel), so the decoder's output is read once, not split and copied.
The decoder's [skip, upsampled] concatenation is not made: its convolution runs as two, summed
inside oneDNN. The first convolution reads the cube itself: each U-Net's selection of the cube's channels
(without its erased position) becomes zero weights of one dense convolution over all of them,
instead of a gathered copy of the cube per U-Net.

The same U-Nets, the same operations up to float rounding (the folded weights round once, not
the BatchNorm's output). Measured on a 2-core AMD EPYC, one thread, 7 cubes of the nf 8 network
(a street frame's): 26 ms against 35 ms grouped and 43 ms one U-Net after another
(benchmarks/rows/cloze.py, docs/performance.md). It is made for
a few cubes at a time: with 128 (offline scoring's batches) the grouped activations outgrow the
caches and one U-Net per thread is faster (nf 8, two threads: 249 ms against 356 ms).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.selfcomplete import FLOW_CHANNELS, RAW_CHANNELS, run_unet
from models.stacked_cloze.one_unet import fold_batchnorm
from models.stacked_cloze.stack import UNetStack

_ONE, _SAME = [1, 1], [1, 1]  # stride / dilation 1, padding 1 (3x3)


def available(x: Tensor, training: bool) -> bool:
    """Whether `PackedStack` can run on `x` here: eval mode, no gradients, a float32 CPU tensor (bf16
    under CPU autocast, where oneDNN has bf16 kernels) and a torch whose oneDNN has the fused operators."""
    if training or torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.is_autocast_enabled("cpu") and (torch.get_autocast_dtype("cpu") != torch.bfloat16
                                            or not torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False  # oneDNN packs bf16 weights only on CPUs with AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight"))


def state_version(stack: UNetStack) -> tuple:
    """Changes whenever a parameter or buffer of `stack` is written or replaced: the packed copy is then stale."""
    return tuple((t.data_ptr(), t._version) for t in (*stack.parameters(), *stack.buffers()))


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """The convolution's weight and bias with the eval BatchNorm after it folded in."""
    return fold_batchnorm(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                          norm.eps)


def _pack(weight: Tensor, dtype: torch.dtype, groups: int, input_size: list[int], padding: list[int] = _SAME) -> Tensor:
    """A convolution weight (stride 1) laid out once in the blocked format oneDNN reads for `input_size`."""
    return torch.ops.mkldnn._reorder_convolution_weight(weight.to(dtype).contiguous(memory_format=torch.channels_last),
                                                        padding, _ONE, _ONE, groups, input_size)


class _Conv:
    """A convolution (stride 1) with a prepacked weight and its `unary` post-op ("relu" or "none") in one call."""

    def __init__(self, weight: Tensor, bias: Tensor, groups: int, dtype: torch.dtype, input_size: list[int],
                 unary: str = "relu", padding: list[int] = _SAME) -> None:
        self.groups, self.unary, self.padding = groups, unary, padding
        self.weight, self.bias = _pack(weight, dtype, groups, input_size, padding), bias.to(dtype)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, _ONE, _ONE,
                                                       self.groups, self.unary, [], "")


def _conv_bn_relu(conv: nn.Conv2d, norm: nn.BatchNorm2d, dtype: torch.dtype, input_size: list[int]) -> _Conv:
    """conv 3x3 (padding 1) → eval BatchNorm → ReLU, as one oneDNN call."""
    return _Conv(*_folded(conv, norm), conv.groups, dtype, input_size)


def _selecting_conv_bn_relu(conv: nn.Conv2d, norm: nn.BatchNorm2d, input_index: Tensor, channels: int,
                            dtype: torch.dtype, input_size: list[int]) -> _Conv:
    """The stack's first conv → BatchNorm → ReLU on the cube's `channels` channels themselves: U-Net g
    reads channels index[g] of the cube (`input_index`, split per U-Net; the index `channels` is a
    zero channel), so its weights go to those channels of one dense convolution, zeros elsewhere."""
    weight, bias = _folded(conv, norm)
    block = weight.shape[0] // conv.groups
    dense = weight.new_zeros(weight.shape[0], channels + 1, *weight.shape[2:])
    for g, index in enumerate(input_index.split(weight.shape[1])):
        dense[g * block:(g + 1) * block].index_add_(1, index.to(weight.device), weight[g * block:(g + 1) * block])
    return _Conv(dense[:, :channels], bias, 1, dtype, input_size)


class _DoubleConv:
    def __init__(self, layers: nn.Sequential, dtype: torch.dtype, input_size: list[int],
                 first: _Conv | None = None) -> None:
        batch, _, height, width = input_size
        self.first = first or _conv_bn_relu(layers[0], layers[1], dtype, input_size)
        self.second = _conv_bn_relu(layers[3], layers[4], dtype, [batch, layers[3].in_channels, height, width])

    def __call__(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))


class _Down:
    def __init__(self, layers: nn.Sequential, dtype: torch.dtype, input_size: list[int]) -> None:
        self.conv = _DoubleConv(layers, dtype, input_size)

    def __call__(self, x: Tensor) -> Tensor:
        return self.conv(torch.max_pool2d(x, 2))


class _Up:
    """Transposed conv 3x3 stride 2, then the double conv on [skip, upsampled] of each U-Net, its
    first convolution as two: over the skip (with the folded bias) and over the upsampled channels,
    the second one adding the first's output and applying the ReLU in the same oneDNN call (a
    convolution is a sum over its input channels, so nothing is concatenated)."""

    def __init__(self, up: nn.ConvTranspose2d, layers: nn.Sequential, dtype: torch.dtype,
                 input_size: list[int]) -> None:
        batch, channels, height, width = input_size
        self.groups = up.groups
        self.weight = torch.ops.mkldnn._reorder_convolution_transpose_weight(
            up.weight.detach().to(dtype), _SAME, _ONE, [2, 2], _ONE, self.groups, input_size)
        self.bias = up.bias.detach().to(dtype)
        weight, bias = _folded(layers[0], layers[1])
        half = weight.shape[1] // 2  # per U-Net: the skip's channels, then as many upsampled ones
        size = [batch, channels // 2, 2 * height, 2 * width]
        self.from_skip = _Conv(weight[:, :half], bias, self.groups, dtype, size, unary="none")
        self.up_weight = _pack(weight[:, half:], dtype, self.groups, size)
        # float32: the ReLU too in the same call; torch's fallback for a fused bfloat16 add and ReLU has no kernel
        self.relu = "relu" if dtype == torch.float32 else None
        self.second = _conv_bn_relu(layers[3], layers[4], dtype, [batch, layers[3].in_channels, 2 * height, 2 * width])

    def __call__(self, x: Tensor, skip: Tensor) -> Tensor:
        upsampled = torch.ops.mkldnn._convolution_transpose_pointwise(
            x, self.weight, self.bias, _SAME, _ONE, [2, 2], _ONE, self.groups, "none", [], "")
        first = torch.ops.mkldnn._convolution_pointwise.binary(upsampled, self.from_skip(skip), self.up_weight, None,
                                                               _SAME, _ONE, _ONE, self.groups, "add", None, self.relu,
                                                               [], "")
        return self.second(first if self.relu else first.relu_())


class _Heads:
    """Every U-Net's 1x1 output head as one grouped convolution: RAW_CHANNELS outputs per U-Net, the
    flow heads' last one a zero channel that is dropped."""

    def __init__(self, stack: UNetStack, dtype: torch.dtype, input_size: list[int]) -> None:
        self.n_raw, self.n_flow, self.groups = stack.n_raw, stack.n_flow, stack.groups
        weights, biases = [stack.outc_raw.conv.weight.detach()], [stack.outc_raw.conv.bias.detach()]
        if stack.n_flow:
            flow = stack.outc_flow.conv
            pad = RAW_CHANNELS - FLOW_CHANNELS
            weights.append(torch.cat([flow.weight.detach().view(self.n_flow, FLOW_CHANNELS, -1, 1, 1),
                                      flow.weight.new_zeros(self.n_flow, pad, flow.weight.shape[1], 1, 1)], 1)
                           .flatten(0, 1))
            biases.append(torch.cat([flow.bias.detach().view(self.n_flow, FLOW_CHANNELS),
                                     flow.bias.new_zeros(self.n_flow, pad)], 1).flatten())
        self.conv = _Conv(torch.cat(weights), torch.cat(biases), self.groups, dtype, input_size, unary="none",
                          padding=[0, 0])

    def __call__(self, y: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.conv(y)
        raw = out[:, :self.n_raw * RAW_CHANNELS]
        if not self.n_flow:
            return raw, None
        flow = out[:, self.n_raw * RAW_CHANNELS:].unflatten(1, (self.n_flow, RAW_CHANNELS))[:, :, :FLOW_CHANNELS]
        return raw, flow.flatten(1, 2)


class PackedStack:
    """A `UNetStack`'s eval-mode forward with folded, prepacked weights, reading U-Net g's input from
    channels `input_index` (split per U-Net) of the cube (a copy: it does not follow
    later changes of the stack's weights; `state_version` tells when it is stale). `dtype`: float32,
    or bfloat16 for CPU autocast (weights folded in float32, then rounded once)."""

    def __init__(self, stack: UNetStack, input_index: Tensor, dtype: torch.dtype, input_size: list[int]) -> None:
        g, nf = stack.groups, stack.nf
        batch, channels, height, width = input_size
        self.dtype, self.version = dtype, state_version(stack)
        with torch.no_grad():
            layers = stack.inc.conv.conv
            first = _selecting_conv_bn_relu(layers[0], layers[1], input_index, channels, dtype, input_size)
            self.inc = _DoubleConv(layers, dtype, [batch, g * nf, height, width], first)
            self.downs = [_Down(down.mpconv[1].conv, dtype, [batch, g * nf << k, height >> (k + 1), width >> (k + 1)])
                          for k, down in enumerate((stack.down1, stack.down2, stack.down3))]
            self.ups = [_Up(up.up, up.conv.conv, dtype, [batch, g * nf * 8 >> k, height >> (3 - k), width >> (3 - k)])
                        for k, up in enumerate((stack.up1, stack.up2, stack.up3))]
            self.heads = _Heads(stack, dtype, [batch, g * nf, height, width])

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """As `UNetStack.forward` in eval mode on the stacked input of the cubes x (B, channels, H, W)."""
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return run_unet(x, self.inc, self.downs, self.ups, self.heads)
