"""How a stacked cloze network runs: its executions. The network (network.py) holds one in
`execution` and its forward asks it for the outputs; the default, `Auto`, picks by device.

- `Grouped`: all U-Nets together (the stack's grouped convolutions and BatchNorm modules; what
  torchrun's synchronised BatchNorm needs);
- `Sequential`: one U-Net after another on views of the same stacked tensors (one_unet.py);
- `Threads` (CPU): as sequential, but the U-Nets run side by side on worker threads, which share
  out the intra-op threads; forward and backward both (with one worker, sequential); a training
  step can run each U-Net's forward, loss term and backward in one go on its worker
  (`fused_forward_backward`, what utils.cloze_steps.TrainStep calls);
- `Streams` (CUDA): as sequential, but each U-Net on its own CUDA stream, so the small kernels of
  different U-Nets share the GPU (on a CPU, threads);
- `Prepacked` (CPU inference): as grouped, frozen: BatchNorm folded into the convolutions, ReLU
  fused, weights laid out once for oneDNN (prepacked.py); in training, grouped;
- `Auto`: threads on a CPU and streams on a GPU (docs/performance.md: streams measured fastest on a
  GPU; on a 2-core CPU threads are as fast as sequential or up to 1.1x faster, grouped is slower).

Every execution computes each U-Net's function with the same operations; only float rounding
differs (summation order). An execution object holds no weights: the network is passed to it.
"""
from __future__ import annotations

import functools
import weakref
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from models.stacked_cloze.one_unet import run_one
from models.stacked_cloze.prepacked import PackedStack, available, state_version
from models.stacked_cloze.stack import UNetStack
from models.stacked_cloze.threads import UNetWorkers, forward_backward_on_threads, run_on_threads, unet_workers


class Network(Protocol):
    """What an execution uses of a StackedClozeNet (network.py)."""

    stack: UNetStack
    training: bool

    input_index: Tensor

    def stacked_input(self, x: Tensor) -> Tensor: ...

    def unet_inputs(self, x: Tensor) -> list[Tensor]: ...

    def unet_targets(self, x: Tensor, x_of: Tensor) -> list[Tensor]: ...


class Execution:
    """How the U-Nets of a stacked network run. `forward(net, x)` → (raw outputs, flow outputs or None)."""

    name = ""

    def resolve(self, device: torch.device, groups: int) -> Execution:
        """The execution that actually runs on `device` for a stack of `groups` U-Nets (itself, or a fallback)."""
        return self

    def forward(self, net: Network, x: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Grouped(Execution):
    """All U-Nets together: the stack's grouped convolutions and BatchNorm modules."""

    name = "grouped"

    def forward(self, net: Network, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return net.stack(net.stacked_input(x))


class Prepacked(Execution):
    """CPU inference: the grouped stack with each BatchNorm folded into its convolution, the ReLU fused
    and the weights prepacked for oneDNN (prepacked.py), packed on first use and again whenever the
    weights change; float32, or bfloat16 under CPU autocast. Anything else (training, gradients,
    float64, fp16 autocast): `Grouped`. On a GPU: `Streams`. For a few cubes at a time (a live
    frame's); large batches run faster one U-Net per thread (`Threads`, prepacked.py says by how much).

    workers: a batch is shared out over this many worker threads (one intra-op thread each)."""

    name = "prepacked"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._packed: weakref.WeakKeyDictionary[UNetStack, PackedStack] = weakref.WeakKeyDictionary()
        self._grouped, self._streams = Grouped(), Streams()
        self._unsupported = False  # this CPU's oneDNN refused to pack: grouped from then on

    def __repr__(self) -> str:
        return f"Prepacked(workers={self.workers})"

    def resolve(self, device: torch.device, groups: int) -> Execution:
        return self if device.type == "cpu" else self._streams.resolve(device, groups)

    def forward(self, net: Network, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self._unsupported or not available(x, net.training):
            return self._grouped.forward(net, x)
        dtype = torch.bfloat16 if torch.is_autocast_enabled("cpu") else torch.float32
        packed = self._packed.get(net.stack)
        if packed is None or packed.dtype != dtype or packed.version != state_version(net.stack):
            try:
                packed = self._packed[net.stack] = PackedStack(net.stack, net.input_index, dtype, list(x.shape))
            except RuntimeError:  # a CPU or build whose oneDNN lacks these kernels: the same numbers, grouped
                self._unsupported = True
                return self._grouped.forward(net, x)
        with torch.autocast("cpu", enabled=False):
            if self.workers < 2 or len(x) < 2:
                return packed(x)
            chunks = x.tensor_split(min(self.workers, len(x)))
            outputs = unet_workers(len(chunks), 1).map(lambda k: packed(chunks[k]), range(len(chunks)))
            raw = torch.cat([o[0] for o in outputs])
            return raw, (None if outputs[0][1] is None else torch.cat([o[1] for o in outputs]))


class _EachUNetApart(Execution):
    """Executions that run each U-Net apart, as functions on its views of the stacked tensors (one_unet.py)."""

    def run(self, stack: UNetStack, inputs: list[Tensor]) -> list[Tensor]:
        """Each U-Net's output for its input."""
        raise NotImplementedError

    def forward(self, net: Network, x: Tensor) -> tuple[Tensor, Tensor | None]:
        n_raw = net.stack.n_raw
        outputs = self.run(net.stack, net.unet_inputs(x))
        raw_outputs = torch.cat(outputs[:n_raw], dim=1)
        return raw_outputs, torch.cat(outputs[n_raw:], dim=1) if len(outputs) > n_raw else None


class Sequential(_EachUNetApart):
    """One U-Net after another; each U-Net's BatchNorm updates its own block of the running statistics in place."""

    name = "sequential"

    def run(self, stack: UNetStack, inputs: list[Tensor]) -> list[Tensor]:
        views = stack.slot_tensors()
        stack.count_batch()
        return [run_one(stack, views[slot], x, stack.head(slot)) for slot, x in enumerate(inputs)]


class Streams(_EachUNetApart):
    """CUDA: U-Net g runs on its own stream, so the U-Nets' kernels run side by side (their backward
    too: autograd runs each op's backward on its forward's stream). On another device: `Threads`."""

    name = "streams"

    def __init__(self) -> None:
        self._streams: list | None = None  # one CUDA stream per U-Net, made on first use

    def resolve(self, device: torch.device, groups: int) -> Execution:
        return self if device.type == "cuda" else Threads().resolve(device, groups)

    def run(self, stack: UNetStack, inputs: list[Tensor]) -> list[Tensor]:
        device = inputs[0].device
        if self._streams is None or self._streams[0].device != device or len(self._streams) < len(inputs):
            self._streams = [torch.cuda.Stream(device) for _ in range(len(inputs))]
        views = stack.slot_tensors()
        stack.count_batch()
        main = torch.cuda.current_stream(device)
        outputs = []
        for slot, (x, stream) in enumerate(zip(inputs, self._streams)):
            stream.wait_stream(main)  # the inputs (and, in training, last step's weights) are ready
            with torch.cuda.stream(stream):
                outputs.append(run_one(stack, views[slot], x, stack.head(slot)))
        for stream, output in zip(self._streams, outputs):
            main.wait_stream(stream)
            output.record_stream(main)  # made on `stream`, read on `main`: not reused before main is done
        return outputs


class Threads(_EachUNetApart):
    """CPU: the U-Nets side by side on `workers` worker threads (threads.py); on another device, or
    with fewer than 2 workers, `Sequential`.

    workers: None picks `worker_count`'s default. fuse_backward: a training step runs each U-Net's
    forward, loss term and backward in one go on its worker (`fused_forward_backward`); False runs
    all forwards, then all backwards (benchmarks compare the two).
    """

    name = "threads"

    def __init__(self, workers: int | None = None, fuse_backward: bool = True) -> None:
        self.workers, self.fuse_backward = workers, fuse_backward

    def __repr__(self) -> str:
        return f"Threads(workers={self.workers}, fuse_backward={self.fuse_backward})"

    def worker_count(self, groups: int) -> int:
        """`workers`, or the largest count that divides both the U-Nets and the intra-op threads: every
        round of U-Nets then keeps every thread busy (2 threads, 10 U-Nets: 2 workers of 1 thread;
        8 threads: 2 workers of 4; 3 threads: 1, i.e. sequential)."""
        threads = torch.get_num_threads()
        if self.workers:
            return min(self.workers, groups)
        return max(w for w in range(1, min(threads, groups) + 1) if groups % w == 0 and threads % w == 0)

    def resolve(self, device: torch.device, groups: int) -> Execution:
        if device.type != "cpu" or self.worker_count(groups) < 2:
            return Sequential()
        return self

    def pool(self, groups: int) -> UNetWorkers:
        workers = self.worker_count(groups)
        return unet_workers(workers, max(1, torch.get_num_threads() // workers))

    def run(self, stack: UNetStack, inputs: list[Tensor]) -> list[Tensor]:
        return run_on_threads(stack, inputs, self.pool(stack.groups))

    def forward_backward(self, net: Network, x: Tensor, x_of: Tensor,
                         loss_term: Callable[[str, Tensor, Tensor, int], Tensor]) -> Tensor:
        """A training step's forward and backward, each U-Net's on its worker (threads.forward_backward_on_threads)."""
        if not (self.fuse_backward and net.training and self.resolve(x.device, net.stack.groups) is self):
            raise RuntimeError("forward_backward runs the threads execution in training mode only (and fuse_backward)")
        net.stack.count_batch()
        inputs, targets = net.unet_inputs(x), net.unet_targets(x, x_of)
        return forward_backward_on_threads(net.stack, inputs, targets, loss_term, self.pool(net.stack.groups))


class Auto(Execution):
    """The default: `Streams` on a GPU, `Threads` (default worker count) elsewhere."""

    name = "auto"

    def __init__(self) -> None:
        self._streams, self._threads = Streams(), Threads()

    def resolve(self, device: torch.device, groups: int) -> Execution:
        return self._streams if device.type == "cuda" else self._threads.resolve(device, groups)


def fused_forward_backward(model: nn.Module, device: torch.device
                           ) -> Callable[[Tensor, Tensor, Callable[[str, Tensor, Tensor, int], Tensor]], Tensor] | None:
    """`model`'s training step's forward and backward as one call (x, x_of, loss_term) → loss, where its
    execution on `device` has one (threads, fuse_backward, training mode); None otherwise (another
    execution, eval mode, or not a stacked network), where the caller runs forward, then backward."""
    execution = getattr(model, "execution", None)
    if not isinstance(execution, Execution) or not model.training:
        return None
    resolved = execution.resolve(torch.device(device), model.stack.groups)
    if isinstance(resolved, Threads) and resolved.fuse_backward:
        return functools.partial(resolved.forward_backward, model)
    return None
