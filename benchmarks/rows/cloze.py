"""Row "cloze": the cloze networks' training and scoring steps, each fast path against the reference's.

The base ("reference") is SelfCompleteNetFull as the reference runs it: ten separate U-Nets,
eager, fp32, NCHW, its training loop's body. The variants of VARIANTS: the same modules in
channels_last, and the stacked network (models/stacked_cloze.py) run "grouped" (all U-Nets
together, grouped convolutions), "sequential" (one U-Net after another on views of the
stacked weights), "threads" (as sequential, U-Nets side by side on CPU worker threads),
"streams" (one CUDA stream per U-Net) or "prepacked" (grouped, frozen for CPU inference: scoring
only), eager or CUDA-graph captured (utils/cloze_steps.py), in fp32 or bf16. Measured on random cubes of the paper's shape (5 BGR patches and 5 flows of
32x32, nf 32, padding False):

- train cubes/s: forward + backward + Adam step at --batch;
- eval cubes/s: per-cube errors, no_grad, eval mode, at --eval-batch.

Before timing, every variant is loaded with the same weights and its outputs are compared
with the reference's (check_outputs). Every execution option of StackedClozeNet that the
benchmarks use is set in `stacked_network`, and only there.
"""
from __future__ import annotations

import argparse
import functools
from typing import Callable, NamedTuple

import torch

from benchmarks.harness import Result, interleaved
from models import SelfCompleteNet4, SelfCompleteNetFull
from models.stacked_cloze import Auto, Grouped, Prepacked, Sequential, StackedClozeNet, Streams, Threads
from utils.cloze_steps import ErrorStep, TrainStep


class Variant(NamedTuple):
    execution: str | None  # StackedClozeNet's execution; None: the separate U-Nets
    channels_last: bool
    capture: bool  # CUDA graph (utils/cloze_steps.py)
    precision: str
    compiled: bool = False  # the U-Net stack through torch.compile
    fuse_backward: bool = True  # threads: each worker runs a U-Net's forward, loss and backward in one go


VARIANTS = {
    "reference": Variant(None, False, False, "fp32"),  # the reference-equivalent path: separate U-Nets, eager, NCHW
    "reference_cl": Variant(None, True, False, "fp32"),  # the same modules with channels_last tensors
    "grouped": Variant("grouped", False, False, "fp32"),  # stacked: all U-Nets together, grouped convolutions
    "grouped_cl": Variant("grouped", True, False, "fp32"),
    "sequential_cl": Variant("sequential", True, False, "fp32"),  # stacked weights, U-Nets one after another
    "threads_cl": Variant("threads", True, False, "fp32"),  # as sequential, U-Nets side by side on CPU threads
    "threads_unfused": Variant("threads", True, False, "fp32", fuse_backward=False),  # all forwards, then backwards
    "graph_reference": Variant(None, False, True, "fp32"),  # the separate U-Nets, step captured
    "graph_grouped": Variant("grouped", False, True, "fp32"),
    "graph_grouped_cl": Variant("grouped", True, True, "fp32"),
    "graph_sequential_cl": Variant("sequential", True, True, "fp32"),
    "graph_grouped_bf16": Variant("grouped", False, True, "bf16"),
    "graph_grouped_cl_bf16": Variant("grouped", True, True, "bf16"),
    "graph_sequential_cl_bf16": Variant("sequential", True, True, "bf16"),
    "graph_streams_cl": Variant("streams", True, True, "fp32"),
    "graph_streams_cl_bf16": Variant("streams", True, True, "bf16"),
    "graph_streams": Variant("streams", False, True, "fp32"),
    "graph_streams_bf16": Variant("streams", False, True, "bf16"),
    "compiled_grouped_cl_bf16": Variant("grouped", True, True, "bf16", compiled=True),
    "compiled_grouped_cl": Variant("grouped", True, True, "fp32", compiled=True),
    "default": Variant("auto", True, True, "fp32"),  # what train.py / test.py run (make_network, TrainStep, ErrorStep)
    "default_bf16": Variant("auto", True, True, "bf16"),  # the same with precision = bf16
    "sequential_cl_bf16": Variant("sequential", True, False, "bf16"),
    "grouped_cl_bf16": Variant("grouped", True, False, "bf16"),
    # frozen for inference (a live frame's few cubes); training runs grouped
    "prepacked_cl": Variant("prepacked", True, False, "fp32"),
    "prepacked_cl_bf16": Variant("prepacked", True, False, "bf16"),
}
DEFAULT_VARIANTS = {"cpu": ["reference", "reference_cl", "grouped_cl", "sequential_cl", "default", "default_bf16"],
                    "cuda": ["reference", "grouped", "grouped_cl", "sequential_cl", "graph_reference",
                             "graph_grouped", "graph_grouped_cl", "graph_sequential_cl", "graph_grouped_bf16",
                             "graph_grouped_cl_bf16", "default", "default_bf16"]}


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("row cloze")
    group.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                       help="cloze variants (default: DEFAULT_VARIANTS of the device); 'reference' is always "
                            "added: the ratios' base")
    group.add_argument("--net", choices=("full", "net4"), default="full",
                       help="SelfCompleteNetFull or SelfCompleteNet4")
    group.add_argument("--padding", action="store_true", help="padding=True (15 input channels per U-Net)")
    group.add_argument("--eval-batch", type=int, default=128, help="eval batch (cubes)")


EXECUTIONS = {"auto": Auto, "grouped": Grouped, "sequential": Sequential, "streams": Streams, "threads": Threads,
              "prepacked": Prepacked}


def stacked_network(reference: torch.nn.Module, variant: Variant) -> StackedClozeNet:
    """The stacked network that runs `reference`'s U-Nets (its weights taken over) the way `variant` says."""
    model = StackedClozeNet(reference, channels_last=variant.channels_last)
    model.execution = (Threads(fuse_backward=variant.fuse_backward) if variant.execution == "threads" else
                       EXECUTIONS[variant.execution]())
    if variant.compiled:
        model.stack.compile()  # in place: the state-dict keys stay
    return model


def make_network(name: str, net: str, nf: int, padding: bool, device: torch.device) -> torch.nn.Module:
    """The same initial weights for every variant (seed 0): the stacked network takes the reference's over."""
    variant = VARIANTS[name]
    cls, tot_of_num = (SelfCompleteNetFull, 5) if net == "full" else (SelfCompleteNet4, 1)
    torch.manual_seed(0)
    reference = cls(features_root=nf, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict", rawRange=None,
                    useFlow=True, padding=padding)
    if variant.execution:
        return stacked_network(reference, variant).to(device)
    model = reference.to(device)
    return model.to(memory_format=torch.channels_last) if variant.channels_last else model


def random_cubes(batch: int, net: str, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(batch, 15, 32, 32, generator=g)
    flow = torch.randn(batch, 2 * (5 if net == "full" else 1), 32, 32, generator=g)
    return raw.to(device), flow.to(device)


def inputs_for(name: str, raw: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    variant = VARIANTS[name]
    if variant.execution is None and variant.channels_last:  # the separate U-Nets see channels_last inputs
        return raw.contiguous(memory_format=torch.channels_last), flow
    return raw, flow


def reference_train_step(model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The reference's loop body: forward, MSE(raw) + MSE(flow), zero_grad, backward, Adam step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, weight_decay=0.0)
    mse = torch.nn.MSELoss()
    model.train()

    def step() -> torch.Tensor:
        of_out, raw_out, of_target, raw_target = model(raw, flow)
        loss = mse(raw_out, raw_target) + mse(of_out, of_target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def train_step(name: str, model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], object]:
    """The reference's loop body for the reference's variants, else this project's step as train.py runs it."""
    if name.startswith("reference"):
        return reference_train_step(model, raw, flow)
    variant = VARIANTS[name]
    model.train()
    return functools.partial(TrainStep(model, learning_rate=1e-3, lambda_raw=1.0, lambda_of=1.0, use_flow=True,
                                       batch_size=len(raw), device=raw.device, precision=variant.precision,
                                       capture=variant.capture), raw, flow)


def eval_step(name: str, model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], object]:
    """The scoring pass's step: per-cube errors in eval mode (utils/cloze_steps.ErrorStep)."""
    variant = VARIANTS[name]
    model.eval()
    return functools.partial(ErrorStep(model, use_flow=True, batch_size=len(raw), device=raw.device,
                                       precision=variant.precision, capture=variant.capture), raw, flow)


def check_outputs(names: list[str], net: str, nf: int, padding: bool, batch: int,
                  device: torch.device) -> dict[str, tuple[float, float, float]]:
    """Every variant from the reference's weights against the reference path, printed and returned: the largest
    relative differences of its per-cube errors (eval mode), of the losses of 3 training steps on one batch, and
    of the per-cube errors after them.

    Single weights are not compared: Adam's first steps move each weight by about lr in the direction
    of its gradient's sign, which float rounding flips where a gradient is near zero; the function the
    weights compute (the errors) is what must agree.
    """
    raw, flow = random_cubes(batch, net, device, seed=1)

    def run(name: str) -> tuple[torch.Tensor, list[float], torch.Tensor]:
        model = make_network(name, net, nf, padding, device)
        inputs = inputs_for(name, raw, flow)
        before = torch.cat(eval_step(name, model, *inputs)())
        step = train_step(name, model, *inputs)
        losses = []
        for _ in range(3):
            loss = step()
            losses.append(float(loss) if loss is not None else float("nan"))
        after = torch.cat(eval_step(name, model, *inputs)())
        return before, losses, after

    def rel(got: torch.Tensor, want: torch.Tensor) -> float:
        return ((got - want).abs().max() / want.abs().max()).item()

    want_before, want_losses, want_after = run("reference")
    differences = {}
    for name in names:
        before, losses, after = run(name)
        differences[name] = (rel(before, want_before), max(abs(a - b) / abs(b) for a, b in zip(losses, want_losses)),
                             rel(after, want_after))
        print(f"  {name:<26} max rel diff from reference: errors {differences[name][0]:.1e}, "
              f"3 training losses {differences[name][1]:.1e}, errors after them {differences[name][2]:.1e}")
    return differences


def row_cloze(args: argparse.Namespace, device: torch.device) -> list[Result]:
    names = args.variants or DEFAULT_VARIANTS[device.type]
    if "reference" not in names:
        names = ["reference", *names]
    print(f"cloze networks ({args.net}, nf {args.nf}, padding {args.padding}) on {device}")
    check_outputs(names[1:], args.net, args.nf, args.padding, args.batch, device)
    results = []
    for metric, batch, make_step in (("train cubes/s", args.batch, train_step),
                                     ("eval cubes/s", args.eval_batch, eval_step)):
        raw, flow = random_cubes(batch, args.net, device, seed=0)
        steps = {name: make_step(name, make_network(name, args.net, args.nf, args.padding, device),
                                 *inputs_for(name, raw, flow)) for name in names}
        results += interleaved("cloze", metric, steps, batch, device, args.warmup, args.repeats, args.steps)
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


ROWS = {"cloze": row_cloze}
