"""The cloze networks run as ONE network: every U-Net that a forward pass uses, stacked.

`SelfCompleteNetFull` runs up to ten small U-Nets (five raw, five flow) one after another,
`SelfCompleteNet4` up to six. Here the U-Nets a forward pass uses are evaluated together:
U-Net g owns channel block g of every activation, convolutions are grouped (groups = number
of U-Nets), and a BatchNorm2d over G·C channels is exactly G per-U-Net BatchNorms, because
BatchNorm statistics are per channel. The skip concatenation of the decoder stays per U-Net.
The mathematics is the reference's: same weights, same per-U-Net BatchNorm statistics, same
outputs up to float rounding (grouped and separate convolutions sum in different orders).

State dicts speak the reference's language: `state_dict()` returns the reference's per-U-Net
keys, in the reference's order and shapes, and `load_state_dict()` takes them (hooks map
between the stacked tensors and the reference keys), so files trained by the reference code
load here and files saved from here load in the reference code. U-Nets that a forward pass
never uses (those of positions outside `rawRange`) are kept as the reference's own modules,
untouched, as in the reference.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.selfcomplete import (FLOW_CHANNELS, RAW_CHANNELS, SelfCompleteNet4, SelfCompleteNetFull, _ClozeNet,
                                 _UNetNames)

# Parts of one U-Net, in the reference's order: (name in the stack, attribute of _UNetNames).
_ROLES = ("inc", "down1", "down2", "down3", "up1", "up2", "up3")


def _roles_of(names: _UNetNames) -> list[tuple[str, str]]:
    return list(zip(_ROLES, (names.inc, *names.downs, *names.ups)))


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


class _UNetStack(nn.Module):
    """G U-Nets (encoder, decoder) evaluated together; output heads are separate (raw: 3, flow: 2 channels)."""

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
        """All U-Nets together: x holds U-Net g's input in channel block g."""
        s0 = self.inc(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        y = self.down3(s2)
        y = self.up1(y, s2)
        y = self.up2(y, s1)
        y = self.up3(y, s0)
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
        return "outc_raw" if slot < self.n_raw else "outc_flow"

    def forward_each(self, inputs: list[Tensor], streams: list | None = None) -> list[Tensor]:
        """The same function, one U-Net after another, on per-U-Net views of the stacked tensors.

        Each U-Net's BatchNorm updates its own block of the running statistics in place.
        `streams` (CUDA): U-Net g runs on streams[g], so the U-Nets' kernels run side by side
        (their backward too: autograd runs each op's backward on its forward's stream).
        """
        views = self.slot_tensors()
        self.count_batch()
        if streams is None:
            return [self.run_one(views[slot], x, self.head(slot)) for slot, x in enumerate(inputs)]
        main = torch.cuda.current_stream(inputs[0].device)
        outputs = []
        for slot, (x, stream) in enumerate(zip(inputs, streams)):
            stream.wait_stream(main)  # the inputs (and, in training, last step's weights) are ready
            with torch.cuda.stream(stream):
                outputs.append(self.run_one(views[slot], x, self.head(slot)))
        for stream, output in zip(streams, outputs):
            main.wait_stream(stream)
            output.record_stream(main)  # made on `stream`, read on `main`: not reused before main is done
        return outputs

    def forward_threads(self, inputs: list[Tensor], workers: "UNetWorkers") -> list[Tensor]:
        """The U-Nets side by side on CPU worker threads, each with its share of the intra-op threads
        (forward and, through `_UNetsOnThreads`, backward): U-Net g's arithmetic is forward_each's."""
        self.count_batch()
        params = list(self.parameters())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return list(_UNetsOnThreads.apply(self, workers, _CallerState(grad=True), len(inputs), *inputs, *params))
        views = self.slot_tensors()
        caller = _CallerState(grad=False)
        return workers.map(lambda slot: caller.run(self.run_one, views[slot], inputs[slot], self.head(slot)),
                           range(len(inputs)))

    def run_one(self, v: dict[str, Tensor], x: Tensor, head: str) -> Tensor:
        """One U-Net (slot views `v`, output head `head`) on its input x."""
        bn = self.inc.conv.conv[1]  # every BatchNorm here has the same momentum and eps
        fused = _fused_inference(x, self.training)

        def double_conv(x: Tensor, prefix: str) -> Tensor:
            for conv, norm in ((0, 1), (3, 4)):
                weight, bias = v[f"{prefix}.{conv}.weight"], v[f"{prefix}.{conv}.bias"]
                mean, var = v[f"{prefix}.{norm}.running_mean"], v[f"{prefix}.{norm}.running_var"]
                gamma, beta = v[f"{prefix}.{norm}.weight"], v[f"{prefix}.{norm}.bias"]
                if fused:  # eval BatchNorm is affine: folded into the convolution, ReLU fused in (one pass)
                    scale = gamma * torch.rsqrt(var + bn.eps)
                    x = torch.ops.mkldnn._convolution_pointwise(
                        x, weight * scale.view(-1, 1, 1, 1), (bias - mean) * scale + beta, [1, 1], [1, 1], [1, 1], 1,
                        "relu", [None], "")
                    continue
                x = F.conv2d(x, weight, bias, padding=1)
                x = F.batch_norm(x, mean, var, gamma, beta, self.training, bn.momentum, bn.eps)
                x = F.relu(x, inplace=True)
            return x

        s0 = double_conv(x, "inc.conv.conv")
        s1 = double_conv(F.max_pool2d(s0, 2), "down1.mpconv.1.conv")
        s2 = double_conv(F.max_pool2d(s1, 2), "down2.mpconv.1.conv")
        y = double_conv(F.max_pool2d(s2, 2), "down3.mpconv.1.conv")
        for level, skip in ((1, s2), (2, s1), (3, s0)):
            up = upsample(y, v[f"up{level}.up.weight"], v[f"up{level}.up.bias"])
            y = double_conv(torch.cat([skip, up], dim=1), f"up{level}.conv.conv")
        return F.conv2d(y, v[f"{head}.conv.weight"], v[f"{head}.conv.bias"])


def upsample(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The decoder's transposed convolution (3x3, stride 2, padding 1, output padding 1) to twice the size."""
    if (x.device.type == "cpu" and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and (x.requires_grad or weight.requires_grad or bias.requires_grad)):
        return _UpsampleCPU.apply(x, weight, bias)
    return F.conv_transpose2d(x, weight, bias, stride=2, padding=1, output_padding=1)


class _UpsampleCPU(torch.autograd.Function):
    """`upsample` with the weight gradient taken as that of the strided convolution the transposed
    one is the adjoint of: the same sums, which oneDNN's CPU kernels for a strided convolution's
    weight gradient run faster than those for a transposed one's (nf 32, batch 128, one thread, the
    three layers of a U-Net step: 56 against 98 ms with AVX-512, 76 against 129 ms with AVX2)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv_transpose2d(x, weight, bias, stride=2, padding=1, output_padding=1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight, stride=2, padding=1)
        if ctx.needs_input_grad[1]:
            # conv2d(grad, weight, stride 2, padding 1) maps the output's shape to x's; its weight gradient
            # for output gradient x is this layer's.
            grad_w = torch.ops.aten.convolution_backward(x, grad, weight, None, [2, 2], [1, 1], [1, 1], False,
                                                         [0, 0], 1, [False, True, False])[1]
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def _fused_inference(x: Tensor, training: bool) -> bool:
    """Eval-mode float32 inference on a CPU with oneDNN: convolution, BatchNorm and ReLU as one oneDNN call."""
    return (not training and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


# ---- the "threads" execution (CPU) ------------------------------------------------------------

_T = TypeVar("_T")


class UNetWorkers:
    """Worker threads that run U-Nets side by side on a CPU, each with `threads_each` intra-op threads.

    Why: a U-Net's memory-bound BatchNorms and small convolutions scale less than perfectly over
    OpenMP threads; two U-Nets at a time on one thread each avoid that. Measured against sequential
    on 2 cores in three runs under load: training 0.91-1.05x, scoring 0.96-1.21x; in one run on the idle
    machine 1.06x and 1.12x (README, Speed).
    PyTorch's thread count is per thread; `torch.set_num_threads` in a worker also sets the count
    that threads created later start with, so the caller's count is put back once every worker
    has its own.
    """

    def __init__(self, workers: int, threads_each: int) -> None:
        caller_threads = torch.get_num_threads()  # fixes this thread's own count before the workers change theirs
        self.pid = os.getpid()
        ready = threading.Barrier(workers)

        def start() -> None:
            torch.get_num_threads()  # initialises this thread's count (from the process-wide one) ...
            torch.set_num_threads(threads_each)  # ... which this then overrides for this thread only

        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="unet-worker", initializer=start)
        for started in [self.pool.submit(ready.wait) for _ in range(workers)]:  # every worker thread exists
            started.result()
        torch.set_num_threads(caller_threads)

    def map(self, fn: Callable[[int], _T], slots: Iterable[int]) -> list[_T]:
        """fn(slot) for every slot, on the workers (a queue: a free worker takes the next slot); in slot order."""
        return list(self.pool.map(fn, slots))


_WORKERS: dict[tuple[int, int], UNetWorkers] = {}


def unet_workers(workers: int, threads_each: int) -> UNetWorkers:
    """The process's pool of `workers` threads (made on first use; a forked child makes its own)."""
    pool = _WORKERS.get((workers, threads_each))
    if pool is None or pool.pid != os.getpid():
        pool = _WORKERS[(workers, threads_each)] = UNetWorkers(workers, threads_each)
    return pool


class _CallerState:
    """The caller's grad mode and CPU autocast (both thread-local in PyTorch), re-entered on a worker."""

    def __init__(self, grad: bool) -> None:
        self.grad = grad
        self.autocast = torch.is_autocast_enabled("cpu")
        self.autocast_dtype = torch.get_autocast_dtype("cpu")

    def run(self, fn: Callable[..., _T], *args) -> _T:
        with torch.set_grad_enabled(self.grad), torch.autocast("cpu", self.autocast_dtype, enabled=self.autocast):
            return fn(*args)


class _UNetsOnThreads(torch.autograd.Function):
    """The U-Nets' forward and backward on worker threads, as one autograd node of the caller's graph.

    Forward builds each U-Net's own graph on a worker, from leaves that share the stacked parameters'
    memory; backward runs each of those graphs on a worker (the engine runs a CPU graph on the thread
    that asks for it) and gathers the per-U-Net gradients into the stacked parameters' layout.
    """

    @staticmethod
    def forward(ctx, stack: "_UNetStack", workers: UNetWorkers, caller: _CallerState, n_inputs: int,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs = tensors[:n_inputs]
        views = stack.slot_tensors(detach=True)
        leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
        outputs = workers.map(lambda slot: caller.run(stack.run_one, views[slot], leaves[slot], stack.head(slot)),
                              range(n_inputs))
        ctx.graphs = (stack, workers, views, leaves, outputs)
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None (backward skips that U-Net)
        return tuple(output.detach() for output in outputs)

    @staticmethod
    def backward(ctx, *grad_outputs: Tensor | None) -> tuple[Tensor | None, ...]:
        stack, workers, views, leaves, outputs = ctx.graphs
        del ctx.graphs  # each U-Net's graph is freed by its backward
        names = [name for name, _ in stack.named_parameters()]

        def backward_one(slot: int) -> dict[str, Tensor | None]:
            wanted = {name: views[slot][name] for name in names
                      if name in views[slot] and views[slot][name].requires_grad}
            if leaves[slot].requires_grad:
                wanted["input"] = leaves[slot]
            if grad_outputs[slot] is None:  # this U-Net's output was not used: no gradient, as sequentially
                return {}
            found = torch.autograd.grad(outputs[slot], list(wanted.values()), grad_outputs[slot], allow_unused=True)
            return dict(zip(wanted, found))

        per_slot = workers.map(backward_one, range(len(outputs)))
        input_grads = [grads.get("input") for grads in per_slot]
        return (None, None, None, None, *input_grads, *_stacked_grads(stack, views, per_slot))


def _stacked_grads(stack: "_UNetStack", views: list[dict[str, Tensor]],
                  per_slot: list[dict[str, Tensor | None]]) -> list[Tensor | None]:
    """The per-U-Net gradients (by slot, under the stack's parameter names) in the stacked parameters'
    layout, one per parameter of `stack` in order; None where no U-Net has one (a U-Net without one
    gets zeros)."""
    grads = []
    for name, param in stack.named_parameters():
        parts = [(found.get(name), views[slot][name]) for slot, found in enumerate(per_slot) if name in views[slot]]
        if not param.requires_grad or all(g is None for g, _ in parts):
            grads.append(None)
        else:
            grads.append(torch.cat([g if g is not None else torch.zeros_like(v) for g, v in parts]))
    return grads


class StackedClozeNet(nn.Module):
    """A cloze network (`SelfCompleteNetFull` or `SelfCompleteNet4`) whose used U-Nets are stacked.

    Built from a reference network, whose weights it takes over; `forward` has the
    reference's contract. `channels_last` picks the activations' memory format. `execution`:

    - "grouped": all U-Nets together (grouped convolutions);
    - "sequential": one U-Net after another on views of the same stacked tensors;
    - "threads" (CPU): as "sequential", but the U-Nets run side by side on `workers` worker
      threads (default: see `_worker_count`), which share out the intra-op threads; forward and
      backward both (with one worker, sequential); a training step can run each U-Net's forward,
      loss term and backward in one go on its worker (`forward_backward`, what TrainStep calls);
    - "streams" (CUDA): as "sequential", but each U-Net on its own CUDA stream, so the small
      kernels of different U-Nets share the GPU (on a CPU, threads);
    - "auto": threads on a CPU and streams on a GPU (README, Speed: streams measured fastest on a
      GPU; on a 2-core CPU threads are as fast as sequential or up to 1.1x faster, grouped is slower).

    Every execution computes each U-Net's function with the same operations; only float
    rounding differs (summation order).
    """

    EXECUTIONS = ("auto", "grouped", "sequential", "streams", "threads")

    def __init__(self, reference: _ClozeNet, channels_last: bool = True, execution: str = "auto",
                 workers: int | None = None) -> None:
        super().__init__()
        if execution not in self.EXECUTIONS:
            raise ValueError(f"execution must be one of {self.EXECUTIONS}, not {execution!r}")
        self.execution = execution
        self.workers = workers
        self.fuse_backward = True  # False: threads training runs all forwards, then all backwards (measured in speed.py)
        self._streams: list | None = None  # "streams": one CUDA stream per U-Net, made on first use
        self.rawRange = reference.rawRange
        self.tot_raw_num, self.tot_of_num = reference.tot_raw_num, reference.tot_of_num
        self.raw_of_offset, self.useFlow, self.padding = reference.raw_of_offset, reference.useFlow, reference.padding
        self.channels_last = channels_last

        # The U-Nets a forward pass uses: raw ones (positions in rawRange), then the flow ones.
        raw_slots: list[tuple[int, _UNetNames]] = []
        flow_slots: list[tuple[int, _UNetNames]] = []
        self.of_indices: list[int] = []
        for i in self.rawRange:
            raw_slots.append((i, reference._raw_unets[i]))
            of_index = i - self.raw_of_offset
            if self.useFlow and 0 <= of_index < self.tot_of_num:
                flow_slots.append((i, reference._flow_unet_for(of_index)))
                self.of_indices.append(of_index)
        used = [names.inc for _, names in raw_slots + flow_slots]
        if len(set(used)) != len(used):
            raise NotImplementedError("a U-Net serving two positions cannot be stacked")
        groups = len(raw_slots) + len(flow_slots)

        first_conv = getattr(reference, raw_slots[0][1].inc).conv.conv[0]
        in_channels, nf = first_conv.in_channels, first_conv.out_channels
        with torch.device("meta"):  # allocated below; draws nothing from the random generator
            stack = _UNetStack(groups, in_channels, nf, len(raw_slots), len(flow_slots))
        self.stack = stack.to_empty(device=first_conv.weight.device)

        # Input channels of each U-Net: the cube without (padding=False) or with zeros at (padding=True)
        # its erased position; index tot_raw_num·3 is an extra zero channel.
        zero = self.tot_raw_num * RAW_CHANNELS
        index = []
        for i, _ in raw_slots + flow_slots:
            erased = range(i * RAW_CHANNELS, (i + 1) * RAW_CHANNELS)
            if self.padding:
                index += [zero if ch in erased else ch for ch in range(zero)]
            else:
                index += [ch for ch in range(zero) if ch not in erased]
        self.register_buffer("input_index", torch.tensor(index, dtype=torch.long), persistent=False)

        # Reference key → (stacked key, U-Net slot), and the reference's keys in order.
        reference_state = reference.state_dict()
        self._reference_keys = OrderedDict((k, tuple(v.shape)) for k, v in reference_state.items())
        self._to_stacked: dict[str, tuple[str, int]] = {}
        for slot, (_, names) in enumerate(raw_slots + flow_slots):
            for role, name in _roles_of(names):
                self._map_module(name, f"stack.{role}", slot)
        for slot, (_, names) in enumerate(raw_slots):
            self._map_module(names.outc, "stack.outc_raw", slot)
        for slot, (_, names) in enumerate(flow_slots):
            self._map_module(names.outc, "stack.outc_flow", slot)

        # Unused U-Nets stay the reference's modules, under the reference's names.
        mapped_modules = {k.split(".", 1)[0] for k in self._to_stacked}
        for name, module in reference.named_children():
            if name not in mapped_modules:
                self.add_module(name, module)

        with torch.no_grad():
            for key, part in self.map_to_reference(self.stack_state()).items():
                part.copy_(reference_state[key])
        if channels_last:  # weights too: oneDNN then needs no reorder of them in each call
            self.stack.to(memory_format=torch.channels_last)
        self.register_state_dict_post_hook(_state_dict_to_reference)
        self.register_load_state_dict_pre_hook(_state_dict_from_reference)

    def _map_module(self, name: str, stacked_prefix: str, slot: int) -> None:
        for key in self._reference_keys:
            if key.startswith(name + "."):
                self._to_stacked[key] = (stacked_prefix + key[len(name):], slot)

    def stack_state(self) -> dict[str, Tensor]:
        """The stacked parameters and buffers themselves (not detached), by their names in this module."""
        return {f"stack.{k}": v for k, v in (*self.stack.named_parameters(), *self.stack.named_buffers())}

    @staticmethod
    def _slice(tensor: Tensor, slot: int, reference_shape: tuple[int, ...]) -> Tensor:
        """U-Net `slot`'s part of a stacked tensor (a view): block `slot` of dim 0."""
        if not reference_shape:  # num_batches_tracked: one counter per U-Net
            return tensor[slot]
        block = reference_shape[0]
        return tensor[slot * block:(slot + 1) * block]

    def map_to_reference(self, values: dict[str, Tensor | None]) -> OrderedDict[str, Tensor | None]:
        """Tensors named as this module's parameters or buffers (e.g. {name: p.grad for name, p in
        named_parameters()}) as per-U-Net views under the reference's keys, in the reference's order.
        """
        out = OrderedDict()
        for key, shape in self._reference_keys.items():
            stacked_key, slot = self._to_stacked.get(key, (key, None))
            if stacked_key in values:
                value = values[stacked_key]
                out[key] = value if slot is None or value is None else self._slice(value, slot, shape)
        return out

    def to_reference_state_dict(self) -> OrderedDict[str, Tensor]:
        """The state dict under the reference's keys (what `state_dict()` returns), as compact tensors."""
        return self.state_dict()

    def load_reference_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True):
        """Load a state dict with the reference's keys (what `load_state_dict()` takes)."""
        return self.load_state_dict(state_dict, strict=strict)

    def resolved_execution(self, device: torch.device) -> str:
        """The execution that a forward pass on `device` runs ("auto" and device-specific ones resolved)."""
        execution = self.execution
        if execution == "auto":
            execution = "streams" if device.type == "cuda" else "threads"
        if execution == "streams" and device.type != "cuda":
            execution = "threads"
        if execution == "threads" and (device.type != "cpu" or self._worker_count() < 2):
            execution = "sequential"
        return execution

    def _worker_count(self) -> int:
        """`workers`, or the largest count that divides both the U-Nets and the intra-op threads: every
        round of U-Nets then keeps every thread busy (2 threads, 10 U-Nets: 2 workers of 1 thread;
        8 threads: 2 workers of 4; 3 threads: 1, i.e. sequential)."""
        groups, threads = self.stack.groups, torch.get_num_threads()
        if self.workers:
            return min(self.workers, groups)
        return max(w for w in range(1, min(threads, groups) + 1) if groups % w == 0 and threads % w == 0)

    def _worker_pool(self) -> UNetWorkers:
        workers = self._worker_count()
        return unet_workers(workers, max(1, torch.get_num_threads() // workers))

    def _inputs(self, x: Tensor, indices: list[Tensor]) -> list[Tensor]:
        """The cube's channels `indices[k]` for each k, the index tot_raw_num·3 an extra zero channel
        (padding), in the activations' memory format."""
        source = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1) if self.padding else x
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return [source.index_select(1, index).contiguous(memory_format=memory_format) for index in indices]

    def _unet_inputs(self, x: Tensor) -> list[Tensor]:
        """Each U-Net's input: the cube without (or with zeros at) its erased position."""
        return self._inputs(x, list(self.input_index.split(len(self.input_index) // self.stack.groups)))

    def _unet_targets(self, x: Tensor, x_of: Tensor) -> list[Tensor]:
        """What each U-Net completes: its erased raw patch (raw U-Nets), then its flow (flow U-Nets)."""
        c = RAW_CHANNELS
        return ([x[:, i * c:(i + 1) * c] for i in self.rawRange]
                + [x_of[:, j * FLOW_CHANNELS:(j + 1) * FLOW_CHANNELS] for j in self.of_indices])

    def fuses_backward(self, device: torch.device) -> bool:
        """Whether `forward_backward` runs on `device`: training with the threads execution."""
        return self.fuse_backward and self.training and self.resolved_execution(device) == "threads"

    def forward_backward(self, x: Tensor, x_of: Tensor,
                         loss_term: Callable[[str, Tensor, Tensor, int], Tensor]) -> Tensor:
        """A training step's forward and backward, each U-Net's on one worker thread without a pause between.

        Each U-Net's part of the loss depends on its own output only, so a worker that has run a
        U-Net's forward runs its backward at once: no worker waits at a barrier between all
        forwards and all backwards, and only the running U-Nets' activations are alive at a time.
        `loss_term(kind, output, target, count)` is U-Net g's term of the loss (kind "raw" or
        "flow"; count: the elements of all U-Nets' outputs of that kind, for a mean). Gradients
        are added to the parameters' `.grad` (as `loss.backward()` does); returns the loss, the sum
        of the terms (detached). Same arithmetic per U-Net as forward + backward, only the loss's
        summation order differs.
        """
        if not self.fuses_backward(x.device):
            raise RuntimeError("forward_backward runs the threads execution in training mode only (and fuse_backward)")
        stack = self.stack
        stack.count_batch()
        inputs, targets = self._unet_inputs(x), self._unet_targets(x, x_of)
        kinds = ["raw"] * stack.n_raw + ["flow"] * (stack.groups - stack.n_raw)
        counts = {kind: sum(t.numel() for t, k in zip(targets, kinds) if k == kind) for kind in set(kinds)}
        views = stack.slot_tensors(detach=True)
        caller = _CallerState(grad=True)

        def train_one(slot: int) -> tuple[Tensor, dict[str, Tensor | None]]:
            output = caller.run(stack.run_one, views[slot], inputs[slot], stack.head(slot))
            with torch.enable_grad():  # the loss outside autocast, as the caller computes it
                term = loss_term(kinds[slot], output.to(targets[slot].dtype), targets[slot], counts[kinds[slot]])
            wanted = {name: view for name, view in views[slot].items() if view.requires_grad}
            grads = torch.autograd.grad(term, list(wanted.values()), allow_unused=True)
            return term.detach(), dict(zip(wanted, grads))

        terms, per_slot = zip(*self._worker_pool().map(train_one, range(stack.groups)))
        for param, grad in zip(stack.parameters(), _stacked_grads(stack, views, list(per_slot))):
            if grad is not None:
                param.grad = grad if param.grad is None else param.grad.add_(grad)
        return torch.stack(terms).sum()

    def forward(self, x: Tensor, x_of: Tensor) -> tuple[Tensor | list, Tensor, Tensor | list, Tensor]:
        """The reference's contract: (of_outputs, raw_outputs, of_targets, raw_targets)."""
        execution = self.resolved_execution(x.device)
        n_raw = self.stack.n_raw
        if execution == "grouped":
            raw_outputs, of_outputs = self.stack(self._inputs(x, [self.input_index])[0])
        else:
            streams = None
            if execution == "streams":
                if self._streams is None or self._streams[0].device != x.device:
                    self._streams = [torch.cuda.Stream(x.device) for _ in range(self.stack.groups)]
                streams = self._streams
            inputs = self._unet_inputs(x)
            if execution == "threads":
                outputs = self.stack.forward_threads(inputs, self._worker_pool())
            else:
                outputs = self.stack.forward_each(inputs, streams)
            raw_outputs = torch.cat(outputs[:n_raw], dim=1)
            of_outputs = torch.cat(outputs[n_raw:], dim=1) if len(outputs) > n_raw else None
        targets = self._unet_targets(x, x_of)
        raw_targets = torch.cat(targets[:n_raw], dim=1)
        if of_outputs is None:
            return [], raw_outputs.contiguous(), [], raw_targets
        return of_outputs.contiguous(), raw_outputs.contiguous(), torch.cat(targets[n_raw:], dim=1), raw_targets


def _state_dict_to_reference(module: StackedClozeNet, destination: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict post-hook: replace the stacked entries by the reference's keys, in the reference's order.

    Each U-Net's part is copied out (compact, contiguous), so that saving writes it alone.
    """
    own = {key[len(prefix):]: destination.pop(key) for key in list(destination) if key.startswith(prefix)}
    for key, value in module.map_to_reference(own).items():
        if key in module._to_stacked:
            value = value.clone(memory_format=torch.contiguous_format)
        destination[prefix + key] = value
    if hasattr(destination, "_metadata"):
        for key in list(destination._metadata):
            if key == prefix + "stack" or key.startswith(prefix + "stack."):
                del destination._metadata[key]


def _state_dict_from_reference(module: StackedClozeNet, state_dict: dict, prefix: str, local_metadata: dict,
                               strict: bool, missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """load_state_dict pre-hook: gather the reference's per-U-Net entries into the stacked tensors.

    A state dict already in stacked form (keys `stack.…`) passes through unchanged.
    """
    pieces: dict[str, list[tuple[int, str]]] = {}
    for key, (stacked_key, slot) in module._to_stacked.items():
        pieces.setdefault(stacked_key, []).append((slot, key))
    for stacked_key, parts in pieces.items():
        keys = [prefix + key for _, key in sorted(parts)]
        if not all(k in state_dict for k in keys):
            continue  # reported: the stacked key missing, the pieces present unexpected
        values = [state_dict.pop(k) for k in keys]
        state_dict[prefix + stacked_key] = torch.stack(values) if values[0].dim() == 0 else torch.cat(values)


class StackedSelfCompleteNetFull(StackedClozeNet):
    """`SelfCompleteNetFull` (same arguments, same initial weights for the same seed), stacked."""

    def __init__(self, features_root: int = 32, tot_raw_num: int = 5, tot_of_num: int = 5,
                 border_mode: str = "predict", rawRange: int | None = None, useFlow: bool = True,
                 padding: bool = True, channels_last: bool = True, execution: str = "auto") -> None:
        super().__init__(SelfCompleteNetFull(features_root, tot_raw_num, tot_of_num, border_mode, rawRange, useFlow,
                                             padding), channels_last, execution)


class StackedSelfCompleteNet4(StackedClozeNet):
    """`SelfCompleteNet4` (same arguments, same initial weights for the same seed), stacked."""

    def __init__(self, features_root: int = 32, tot_raw_num: int = 5, tot_of_num: int = 1,
                 border_mode: str = "predict", rawRange: int | None = None, useFlow: bool = True,
                 padding: bool = True, channels_last: bool = True, execution: str = "auto") -> None:
        super().__init__(SelfCompleteNet4(features_root, tot_raw_num, tot_of_num, border_mode, rawRange, useFlow,
                                          padding), channels_last, execution)
