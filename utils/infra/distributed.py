"""Several processes (`torchrun`): the process group, who does which share, and collecting results.

Started by `torchrun --nproc_per_node N script.py …`, every process (rank) runs the same
script; torchrun's environment variables RANK, WORLD_SIZE and LOCAL_RANK say which one
it is. `process_group(device)` joins the group (gloo on the CPU, nccl on CUDA, each rank
on `cuda:LOCAL_RANK`) and leaves it at the end. Without torchrun (no WORLD_SIZE, or 1)
everything here is a no-op: rank 0 of 1, `shard` returns all items, `gather_objects`
a one-element list, `barrier` returns at once, and no collective is ever called, so a
single-process run does exactly what it did before this module existed.

Who does what (docs/architecture.md, docs/distributed.md):

    calc_img_inputs.py  each rank the flow of its share of the videos
    boxes               each rank the boxes of its videos; gathered in video order; rank 0 writes the file
    cubes               each rank crops its videos' cubes into a part store; rank 0 joins the parts
    training            DistributedDataParallel + synchronised BatchNorm, one global batch per step
    scoring             each rank scores its share of the cubes; gathered in order; rank 0 evaluates

A rank that waits on another (a barrier, a gather) waits at most the group's timeout
(`VEC_DIST_TIMEOUT_MINUTES`, default 30); then, or when another rank's connection closes,
it stops with one line instead of hanging.
"""
from __future__ import annotations

import datetime
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from utils.infra.errors import VECError

TIMEOUT_VARIABLE = "VEC_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 30.0

T = TypeVar("T")


# ---- who am I ----------------------------------------------------------------------------

def active() -> bool:
    """True inside `process_group` when torchrun started more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the process that writes the shared files and prints."""
    return rank() == 0


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 without torchrun); readable before and after the group exists."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise VECError(f"WORLD_SIZE = {os.environ['WORLD_SIZE']!r} is not a number; start the script "
                       "with `python` or `torchrun`") from None


def error_prefix() -> str:
    """'[rank r of n] ' before an error line when torchrun started several processes, else ''."""
    world = launched_world_size()
    return f"[rank {os.environ.get('RANK', '?')} of {world}] " if world > 1 else ""


# ---- sharing work --------------------------------------------------------------------------

def share_bounds(n: int, rank: int, world_size: int, weights: Sequence[float] | None = None) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous share of n items.

    Without weights the shares differ in size by at most one (the first ranks get the
    larger ones when n is not divisible). With weights (e.g. each video's frame count)
    the cuts are placed where the cumulative weight is nearest to k/world_size of the total.
    Shares of ranks 0..world_size-1 are consecutive and cover 0..n, so concatenating
    what the ranks computed in rank order gives the original order.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if weights is None:
        base, extra = divmod(n, world_size)
        start = rank * base + min(rank, extra)
        return start, start + base + (1 if rank < extra else 0)
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} items")
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(weights, dtype=np.float64))])

    def cut(k: int) -> int:
        if k == 0:
            return 0
        if k == world_size:
            return n
        return int(np.argmin(np.abs(cumulative - cumulative[-1] * k / world_size)))

    return cut(rank), cut(rank + 1)


def shard(items: Sequence[T], weights: Sequence[float] | None = None) -> Sequence[T]:
    """This rank's contiguous share of `items` (all of them in a single process)."""
    start, stop = share_bounds(len(items), rank(), world_size(), weights)
    return items[start:stop]


# ---- collectives -------------------------------------------------------------------------

def _collective(what: str, call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except RuntimeError as err:  # dist.DistError and gloo's connection errors
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # without gloo's source location and advice
        raise VECError(f"lost the other processes while {what} ({first[:200]}): another rank failed "
                       f"(see its own error line) or took longer than {TIMEOUT_VARIABLE} minutes") from None


def barrier() -> None:
    """Wait until every rank is here."""
    if active():
        _collective("waiting at a barrier", dist.barrier)


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj` (picklable), in rank order, on every rank; [obj] in a single process."""
    if not active():
        return [obj]
    gathered: list = [None] * world_size()
    _collective("gathering results", dist.all_gather_object, gathered, obj)
    return gathered


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (the others' argument is ignored); `obj` in a single process."""
    if not active():
        return obj
    holder = [obj if is_main() else None]
    _collective("waiting for rank 0", dist.broadcast_object_list, holder, src=0)
    return holder[0]


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) whose gradient is the all_reduce(SUM) of the incoming gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(tensor: Tensor) -> Tensor:
    """Differentiable sum of `tensor` over the ranks (the tensor itself in a single process)."""
    return _SumOverRanks.apply(tensor) if active() else tensor


# ---- training ------------------------------------------------------------------------------

class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """What torch.nn.SyncBatchNorm does, for CPU tensors (over gloo).

    PyTorch's SyncBatchNorm refuses CPU input (its kernels, batch_norm_stats …, exist for
    CUDA only, and DistributedDataParallel refuses it on a CPU model), so on the CPU the
    converted layers get this class: in training the batch statistics are computed over
    the cubes of ALL ranks with two differentiable all-reduces (per-channel sums, then
    sums of squared deviations), so normalisation, gradients and running statistics are
    those of one batch norm over the global batch. Out of training it is a BatchNorm.
    Parameters and buffers are BatchNorm's, so state dicts are unchanged.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or not active():
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        local_count = input.new_tensor([input.numel() // channels])
        sums = sum_over_ranks(torch.cat([input.sum(dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = input - mean.view(shape)
        var = sum_over_ranks((centered * centered).sum(dims)) / count  # biased, as batch norm normalises
        output = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                self.running_var.mul_(1 - factor).add_(unbiased * factor)
        return output


def _on_cpu(module: nn.Module) -> nn.Module:
    """torch's SyncBatchNorm layers of `module` turned into CPUSyncBatchNorm (same parameters and buffers)."""
    for child in module.modules():
        if type(child) is nn.SyncBatchNorm:
            child.__class__ = CPUSyncBatchNorm
    return module


def data_parallel(model: nn.Module, device: str, find_unused_parameters: bool = False) -> nn.Module:
    """`model` (already on `device`) with synchronised BatchNorm inside DistributedDataParallel.

    BatchNorm layers become torch.nn.SyncBatchNorm (convert_sync_batchnorm; on the CPU
    then CPUSyncBatchNorm above), so batch statistics are those of the global batch, as
    with one process. In a single process the model is returned unchanged.
    """
    if not active():
        return model
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if torch.device(device).type == "cuda":
        index = torch.device(device).index
        ids = [index if index is not None else torch.cuda.current_device()]
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=find_unused_parameters)
    return nn.parallel.DistributedDataParallel(_on_cpu(model), find_unused_parameters=find_unused_parameters)


# ---- the process group -------------------------------------------------------------------

def _timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_MINUTES))
    try:
        minutes = float(text)
        if not (math.isfinite(minutes) and minutes > 0):
            raise ValueError(text)
        return datetime.timedelta(minutes=minutes)
    except (ValueError, OverflowError):  # not a number, nan, inf, ≤ 0, or more than a timedelta holds
        raise VECError(f"{TIMEOUT_VARIABLE} = {text!r} must be a finite positive number of minutes") from None


def _uses_cuda(device: str) -> bool:
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


@contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """Join torchrun's process group for the block's duration (a no-op in a single process).

    `device` is the config's setting (auto, cpu, cuda, cuda:N): nccl with this process on
    `cuda:LOCAL_RANK` (set as the current device, so 'cuda' means that GPU) when it uses
    CUDA, gloo otherwise. Naming one GPU (cuda:N) is refused: every rank would use it.
    """
    world = launched_world_size()
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise VECError("this PyTorch build has no torch.distributed; run with `python`, not `torchrun`")
    timeout = _timeout()
    if _uses_cuda(device):
        if device not in ("auto", "cuda"):
            raise VECError(f"device = {device} names one GPU but torchrun started {world} processes; set device = "
                           "cuda or auto (each process then uses cuda:LOCAL_RANK)")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise VECError(f"process with LOCAL_RANK {local} has no GPU: PyTorch sees {torch.cuda.device_count()} "
                           "on this machine; start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    try:
        dist.init_process_group(backend=backend, timeout=timeout)
    except (RuntimeError, ValueError) as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise VECError(f"could not join the {world} processes ({backend}): {first[:200]}; check torchrun's "
                       "--rdzv_endpoint / --master_addr and --master_port") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextmanager
def quiet_unless_main() -> Iterator[None]:
    """On ranks other than 0: no standard output and no warnings (rank 0 prints them once);
    errors still reach standard error."""
    if is_main():
        yield
        return
    stdout = sys.stdout
    with open(os.devnull, "w") as devnull, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.stdout = devnull
        try:
            yield
        finally:
            sys.stdout = stdout
