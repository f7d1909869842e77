"""The U-Nets of a stack side by side on CPU worker threads: the pool, and autograd across it.

Why: a U-Net's memory-bound BatchNorms and small convolutions scale less than perfectly over
OpenMP threads; two U-Nets at a time on one thread each avoid that. Measured against sequential
on 2 cores in three runs under load: training 0.91-1.05x, scoring 0.96-1.21x; in one run on the idle
machine 1.06x and 1.12x (docs/performance.md).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import torch
from torch import Tensor

from models.stacked_cloze.one_unet import run_one
from models.stacked_cloze.stack import UNetStack

_T = TypeVar("_T")


class UNetWorkers:
    """Worker threads that run U-Nets side by side on a CPU, each with `threads_each` intra-op threads.

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


class CallerState:
    """The caller's grad mode and CPU autocast (both thread-local in PyTorch), re-entered on a worker."""

    def __init__(self, grad: bool) -> None:
        self.grad = grad
        self.autocast = torch.is_autocast_enabled("cpu")
        self.autocast_dtype = torch.get_autocast_dtype("cpu")

    def run(self, fn: Callable[..., _T], *args) -> _T:
        with torch.set_grad_enabled(self.grad), torch.autocast("cpu", self.autocast_dtype, enabled=self.autocast):
            return fn(*args)


def run_on_threads(stack: UNetStack, inputs: list[Tensor], workers: UNetWorkers) -> list[Tensor]:
    """The U-Nets side by side on `workers`, each with its share of the intra-op threads (forward and,
    through `_UNetsOnThreads`, backward): U-Net g's arithmetic is the sequential execution's."""
    stack.count_batch()
    params = list(stack.parameters())
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return list(_UNetsOnThreads.apply(stack, workers, CallerState(grad=True), len(inputs), *inputs, *params))
    views = stack.slot_tensors()
    caller = CallerState(grad=False)
    return workers.map(lambda slot: caller.run(run_one, stack, views[slot], inputs[slot], stack.head(slot)),
                       range(len(inputs)))


class _UNetsOnThreads(torch.autograd.Function):
    """The U-Nets' forward and backward on worker threads, as one autograd node of the caller's graph.

    Forward builds each U-Net's own graph on a worker, from leaves that share the stacked parameters'
    memory; backward runs each of those graphs on a worker (the engine runs a CPU graph on the thread
    that asks for it) and gathers the per-U-Net gradients into the stacked parameters' layout.
    """

    @staticmethod
    def forward(ctx, stack: UNetStack, workers: UNetWorkers, caller: CallerState, n_inputs: int,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs = tensors[:n_inputs]
        views = stack.slot_tensors(detach=True)
        leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
        outputs = workers.map(lambda slot: caller.run(run_one, stack, views[slot], leaves[slot], stack.head(slot)),
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
        return (None, None, None, None, *input_grads, *stacked_grads(stack, views, per_slot))


def forward_backward_on_threads(stack: UNetStack, inputs: list[Tensor], targets: list[Tensor],
                                loss_term: Callable[[str, Tensor, Tensor, int], Tensor],
                                workers: UNetWorkers) -> Tensor:
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
    kinds = ["raw"] * stack.n_raw + ["flow"] * (stack.groups - stack.n_raw)
    counts = {kind: sum(t.numel() for t, k in zip(targets, kinds) if k == kind) for kind in set(kinds)}
    views = stack.slot_tensors(detach=True)
    caller = CallerState(grad=True)

    def train_one(slot: int) -> tuple[Tensor, dict[str, Tensor | None]]:
        output = caller.run(run_one, stack, views[slot], inputs[slot], stack.head(slot))
        with torch.enable_grad():  # the loss outside autocast, as the caller computes it
            term = loss_term(kinds[slot], output.to(targets[slot].dtype), targets[slot], counts[kinds[slot]])
        wanted = {name: view for name, view in views[slot].items() if view.requires_grad}
        grads = torch.autograd.grad(term, list(wanted.values()), allow_unused=True)
        return term.detach(), dict(zip(wanted, grads))

    terms, per_slot = zip(*workers.map(train_one, range(stack.groups)))
    for param, grad in zip(stack.parameters(), stacked_grads(stack, views, list(per_slot))):
        if grad is not None:
            param.grad = grad if param.grad is None else param.grad.add_(grad)
    return torch.stack(terms).sum()


def stacked_grads(stack: UNetStack, views: list[dict[str, Tensor]],
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
