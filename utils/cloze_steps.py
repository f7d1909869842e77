"""The cloze networks' training and scoring steps, and the cube batches that feed them.

One step = the reference's: forward, loss (docs/method.md §6), backward, Adam. How it runs
depends on the device, never what it computes:

- CPU, or any device under torchrun: eager PyTorch, one step per batch.
- CUDA, one process: the step of a full batch is captured once in a CUDA graph and
  replayed (ten small U-Nets launch hundreds of tiny kernels; the replay launches them
  as one). The warm-up steps that capturing needs run on a copy of the batch and are
  then undone (weights, BatchNorm statistics and Adam's moments restored), so the
  sequence of updates is the eager one. A smaller last batch runs eagerly.
- `precision = bf16`: forward under bfloat16 autocast (losses and Adam in float32).

On a GPU, batches are read from the memory-mapped cube store on a background thread into
pinned memory and copied asynchronously, so that the GPU does not wait for the disk (on a
CPU they are read in line: a reader thread would compete with the compute threads).
`cube_errors` runs the error step over cubes of a store: the training-score pass and the
scoring of test cubes (`distributed_cube_errors` shares it between torchrun ranks).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models.stacked_cloze import fused_forward_backward
from utils.infra import distributed
from utils.cubes import CubeStore
from utils.infra.precision import autocast, check_precision
from utils.infra.prefetch import prefetch

CLOZE_PRECISIONS = ("fp32", "bf16")
CAPTURE_WARMUP_STEPS = 3  # eager steps on a side stream before capturing (as torch.cuda.graphs' docs do)


def forward_context(precision: str, device: torch.device, capturing: bool = False) -> contextlib.AbstractContextManager:
    """The cloze networks' forward context (utils.infra.precision.autocast): none for fp32, the reference's
    arithmetic untouched. The steps check `precision` once, when built."""
    return autocast(precision, device, cache_enabled=not capturing)


def wants_capture(device: torch.device, requested: bool) -> bool:
    """CUDA graphs for a single-process run on a GPU (DistributedDataParallel's hooks run eagerly)."""
    return requested and device.type == "cuda" and not distributed.active()


# ---- batches ------------------------------------------------------------------------------

def _host_batches(store: CubeStore, indices: np.ndarray, batch_size: int, generator: torch.Generator | None,
                  rank: int, world_size: int, pin: bool) -> Iterator[tuple[Tensor, Tensor]]:
    """The rows of each batch, read from the memory map: raw uint8 (B, T, 3, p, p), flow float32 (B, T_of, 2, p, p)."""
    if generator is not None:
        indices = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(indices), batch_size):
        rows = np.sort(indices[start:start + batch_size])
        if world_size > 1:
            first, stop = distributed.share_bounds(len(rows), rank, world_size)
            rows = rows[first:stop]
        batch = []
        for array in (store.raw, store.flow):
            out = torch.empty((len(rows), *array.shape[1:]), dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, pin_memory=pin)
            np.take(array, rows, axis=0, out=out.numpy())
            batch.append(out)
        yield batch[0], batch[1]


def cube_batches(store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                 generator: torch.Generator | None = None, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
    """Network inputs for batches of cubes: raw (B, 3T, p, p) in [0, 1] and flow (B, 2T_of, p, p).

    With a generator the order is shuffled (as DataLoader(shuffle=True)); rows of a batch
    are read from the memory map in file order, which is faster and changes nothing.
    With world_size > 1 every rank draws the same permutation and takes its contiguous
    share (`distributed.share_bounds`) of each global batch of `batch_size` cubes, so the
    cubes of a step over all ranks are the single-process batch (a share may be empty).
    On a GPU the rows are read ahead on a background thread into pinned memory and copied
    asynchronously; the uint8 → float conversion runs on the device.
    """
    on_gpu = torch.device(device).type == "cuda"
    host = _host_batches(store, indices, batch_size, generator, rank, world_size, pin=on_gpu)
    for raw, flow in (prefetch(host) if on_gpu else host):
        raw = raw.to(device, non_blocking=True).flatten(1, 2).float() / 255.0  # (B, T, 3, p, p) -> (B, 3T, p, p)
        flow = flow.to(device, non_blocking=True).flatten(1, 2).float()
        yield raw, flow


# ---- steps --------------------------------------------------------------------------------

def _share_of_batch_loss(output: Tensor, target: Tensor) -> Tensor:
    """Sum over this rank's cubes of each cube's mean squared error (0 for no cubes)."""
    return ((output - target) ** 2).flatten(1).mean(1).sum()


class _Captured:
    """A function of fixed-shape tensors, captured in a CUDA graph: inputs are copied into static buffers."""

    def __init__(self, fn: Callable[..., Tensor | tuple], example: tuple[Tensor, ...],
                 warmup: Callable[..., None] | None = None, after_warmup: Callable[[], None] | None = None) -> None:
        self.inputs = tuple(t.clone() for t in example)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(CAPTURE_WARMUP_STEPS):
                (warmup or fn)(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        if after_warmup is not None:
            after_warmup()
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the cube reader's thread may allocate pinned memory meanwhile.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = fn(*self.inputs)

    def shape_fits(self, *tensors: Tensor) -> bool:
        return all(t.shape == s.shape for t, s in zip(tensors, self.inputs))

    def __call__(self, *tensors: Tensor):
        for static, t in zip(self.inputs, tensors):
            static.copy_(t)
        self.graph.replay()
        return self.outputs


class TrainStep:
    """Adam steps of `model` on batches (train.py's loss and optimiser), eager or CUDA-graph captured.

    `world_size > 1` (DistributedDataParallel): each rank's loss is its cubes' part of the
    global batch's mean times world_size, so that DDP's average of the gradients is the
    gradient of the single-process loss. Calling returns the loss (a detached device tensor).
    """

    def __init__(self, model: nn.Module, *, learning_rate: float, lambda_raw: float, lambda_of: float,
                 use_flow: bool, batch_size: int, device: torch.device, precision: str = "fp32",
                 capture: bool = False, world_size: int = 1) -> None:
        self.model, self.device, self.precision = model, torch.device(device), precision
        self.lambda_raw, self.lambda_of, self.use_flow = lambda_raw, lambda_of, use_flow
        self.batch_size, self.world_size = batch_size, world_size
        self.capture = wants_capture(self.device, capture)
        check_precision(precision, self.device, "precision", CLOZE_PRECISIONS)  # before any work
        # capturable: Adam's step counter lives on the GPU, so its update can be replayed.
        options = {"capturable": True, "foreach": True} if self.capture else {}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-7, weight_decay=0.0, **options)
        self._mse = nn.MSELoss()
        self._graph: _Captured | None = None

    def loss(self, raw: Tensor, flow: Tensor, batch_cubes: int, capturing: bool = False) -> Tensor:
        with forward_context(self.precision, self.device, capturing):
            of_out, raw_out, of_target, raw_target = self.model(raw, flow)
        if self.precision != "fp32":
            raw_out = raw_out.float()
            of_out = of_out.float() if isinstance(of_out, Tensor) else of_out
        if self.world_size == 1:
            loss = self.lambda_raw * self._mse(raw_out, raw_target)
            if self.use_flow:
                loss = loss + self.lambda_of * self._mse(of_out, of_target)
            return loss
        loss = self.lambda_raw * _share_of_batch_loss(raw_out, raw_target)
        if self.use_flow:
            loss = loss + self.lambda_of * _share_of_batch_loss(of_out, of_target)
        return loss * (self.world_size / batch_cubes)

    def _loss_term(self, kind: str, output: Tensor, target: Tensor, count: int) -> Tensor:
        """One U-Net's term of `loss` (single process): its squared errors' share of its kind's mean."""
        weight = self.lambda_raw if kind == "raw" else self.lambda_of
        return weight * (nn.functional.mse_loss(output, target, reduction="sum") / count)

    def _eager(self, raw: Tensor, flow: Tensor, batch_cubes: int) -> Tensor:
        self.optimizer.zero_grad()
        forward_backward = fused_forward_backward(self.model, self.device) if self.world_size == 1 else None
        if forward_backward is not None and (self.use_flow or not self.model.useFlow):
            # The stacked network on CPU threads: each U-Net's backward follows its forward on its worker.
            with forward_context(self.precision, self.device):  # the workers' forwards (their losses run outside)
                loss = forward_backward(raw, flow, self._loss_term)
        else:
            loss = self.loss(raw, flow, batch_cubes)
            loss.backward()
        self.optimizer.step()
        return loss.detach()

    def __call__(self, raw: Tensor, flow: Tensor, batch_cubes: int | None = None) -> Tensor:
        batch_cubes = len(raw) if batch_cubes is None else batch_cubes
        if not self.capture or len(raw) != self.batch_size:
            return self._eager(raw, flow, batch_cubes)
        if self._graph is None:
            self._graph = self._capture_step(raw, flow)
        return self._graph(raw, flow).clone()

    def _capture_step(self, raw: Tensor, flow: Tensor) -> _Captured:
        # The module's own tensors (a stacked network's state_dict() returns per-U-Net copies).
        own = [*self.model.parameters(), *self.model.buffers()]
        saved = [t.detach().clone() for t in own]
        had_state = bool(self.optimizer.state)
        moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in self.optimizer.state.items()}

        def warmup(raw: Tensor, flow: Tensor) -> None:
            self._eager(raw, flow, len(raw))

        def undo_warmup() -> None:
            """The warm-up steps never happened: weights, statistics and Adam's state as before them."""
            with torch.no_grad():
                for value, before in zip(own, saved):
                    value.copy_(before)
                for p, state in self.optimizer.state.items():
                    for name, value in state.items():
                        if had_state:
                            value.copy_(moments[id(p)][name])
                        else:
                            value.zero_()  # Adam's fresh state: step 0, zero moments
            # Gradients allocated inside the graph's pool are what backward writes on each replay.
            self.optimizer.zero_grad(set_to_none=True)

        def step(raw: Tensor, flow: Tensor) -> Tensor:
            loss = self.loss(raw, flow, len(raw), capturing=True)
            loss.backward()
            self.optimizer.step()
            return loss.detach()

        return _Captured(step, (raw, flow), warmup=warmup, after_warmup=undo_warmup)


class ErrorStep:
    """Per-cube raw and flow completion errors (sum of squared errors) of `model` in eval mode."""

    def __init__(self, model: nn.Module, *, use_flow: bool, batch_size: int, device: torch.device,
                 precision: str = "fp32", capture: bool = False) -> None:
        self.model, self.use_flow, self.batch_size = model, use_flow, batch_size
        self.device, self.precision = torch.device(device), precision
        self.capture = wants_capture(self.device, capture)
        check_precision(precision, self.device, "precision", CLOZE_PRECISIONS)
        self._graph: _Captured | None = None

    def _errors(self, raw: Tensor, flow: Tensor, capturing: bool = False) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            with forward_context(self.precision, self.device, capturing):
                of_out, raw_out, of_target, raw_target = self.model(raw, flow)
            raw_sse = ((raw_target - raw_out.float()) ** 2).flatten(1).sum(1)
            if not self.use_flow:
                return raw_sse, raw_sse[:0]
            return raw_sse, ((of_target - of_out.float()) ** 2).flatten(1).sum(1)

    def __call__(self, raw: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        if not self.capture or len(raw) != self.batch_size:
            return self._errors(raw, flow)
        if self._graph is None:
            self._graph = _Captured(lambda r, f: self._errors(r, f, capturing=True), (raw, flow))
        return tuple(t.clone() for t in self._graph(raw, flow))


# ---- passes over a store ---------------------------------------------------------------

def cube_errors(model: nn.Module, store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                use_flow: bool, progress: bool = False, label: str = "errors", precision: str = "fp32",
                cuda_graphs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-cube raw and flow scores: the SUM of squared completion errors (eval mode)."""
    model.eval()
    step = ErrorStep(model, use_flow=use_flow, batch_size=batch_size, device=torch.device(device),
                     precision=precision, capture=cuda_graphs)
    raw_scores, of_scores = [], []
    batches = cube_batches(store, indices, batch_size, device)
    for raw, flow in tqdm(batches, total=-(-len(indices) // batch_size), desc=label, unit="batch", disable=not progress):
        raw_sse, of_sse = step(raw, flow)
        raw_scores.append(raw_sse)
        of_scores.append(of_sse)
    empty = np.zeros(0)
    if not raw_scores:
        return empty, (empty if use_flow else None)

    def gathered(parts: list[Tensor]) -> np.ndarray:
        # One copy to the host at the end, out of the tensors: numpy views would keep small torch
        # allocations alive, which pins the freed batch buffers around them.
        return torch.cat(parts).double().cpu().numpy().copy()

    return gathered(raw_scores), (gathered(of_scores) if use_flow else None)


def distributed_cube_errors(model: nn.Module, store: CubeStore, indices: np.ndarray, batch_size: int, device: str,
                            use_flow: bool, progress: bool = False, label: str = "errors",
                            precision: str = "fp32", cuda_graphs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """`cube_errors` of `indices` with each rank of the torchrun group scoring its contiguous share,
    gathered in the order of `indices` on every rank (plain `cube_errors` in a single process)."""
    raw, of = cube_errors(model, store, distributed.shard(indices), batch_size, device, use_flow, progress, label,
                          precision, cuda_graphs)
    parts = distributed.gather_objects((raw, of))
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]) if use_flow else None)
