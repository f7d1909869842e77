"""Speed of the pipeline's stages, each fast path against the reference-equivalent path, in ONE run.

    python benchmarks/speed.py [--device cpu|cuda] [--rows cloze flownet2 cascade_rcnn] [--batch 128] [--eval-batch 128]
                               [--flow-batch 8] [--det-batch 4] [--precisions fp16 bf16] [--repeats 5]

Row "cloze" (the cloze networks, the training step's cost): the reference-equivalent path
(SelfCompleteNetFull as the reference runs it: ten separate U-Nets, eager, fp32, NCHW)
against the variants of CLOZE_VARIANTS: the same modules in channels_last, and the stacked
network (models/stacked_cloze.py) run "grouped" (all U-Nets together, grouped convolutions)
or "sequential" (one U-Net after another on views of the stacked weights). Measured on
random cubes of the paper's shape (5 BGR patches and 5 flows of 32x32, nf 32, padding False):

- train cubes/s: forward + backward + Adam step at --batch;
- eval cubes/s: no_grad forward in eval mode at --eval-batch.

After a warm-up, the variants run interleaved (variant A, B, C, A, B, C, ...) --repeats
times; the table gives the median of each and its ratio to the reference path, so a noisy
or shared machine affects all variants alike. On CUDA, timings are synchronised and the
peak GPU memory of each variant is printed. Before timing, every variant is loaded with the
same weights and its outputs are compared with the reference's.

Rows "flownet2" (pairs/s at 512x384, --flow-batch pairs per step) and "cascade_rcnn"
(frames/s at the paper's 1333x800 test scale, --det-batch frames per step): the network as
the pipeline runs it (FlowNet2Flow.compute / CascadeRCNNDetector: uint8 frames in, float32
numpy out) in each precision of --precisions (flow_precision / detector_precision), where the
fp32 variant is named "reference" and is each row's ratio base. Weights are det_fill stand-ins
(tests/detfill.py; no checkpoint is needed), so the rows measure speed only; the accuracy of
fp16 / bf16 is benchmarks/precision.py's. These rows import no tqdm or pytest.

Later rows (end to end) plug in as functions `row_<name>(args) -> list[Result]` registered in ROWS.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from FlowNet2_src import FlowNet2  # noqa: E402
from models import CascadeRCNN, SelfCompleteNet4, SelfCompleteNetFull  # noqa: E402
from models.cascade_rcnn import TEST_SCALE  # noqa: E402
from models.stacked_cloze import StackedClozeNet  # noqa: E402
from tests.detfill import det_fill  # noqa: E402
from utils.cloze_steps import ErrorStep, TrainStep  # noqa: E402
from utils.errors import VECError  # noqa: E402
from utils.precision import autocast, check_precision  # noqa: E402


@dataclass
class Result:
    """One measured quantity of one variant: a rate (higher is better) per repeat, and peak memory."""

    row: str
    metric: str  # e.g. "train cubes/s"
    variant: str
    rates: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, times: int = 1) -> float:
    synchronize(device)
    started = time.perf_counter()
    for _ in range(times):
        fn()
    synchronize(device)
    return time.perf_counter() - started


def interleaved(row: str, metric: str, steps: dict[str, Callable[[], object]], items_per_step: int,
                device: torch.device, warmup: int, repeats: int, steps_per_repeat: int = 1) -> list[Result]:
    """Time each variant's step `repeats` times (`steps_per_repeat` steps each: one on a CPU, tens on a GPU,
    whose single steps are too short to time), variants interleaved, after `warmup` untimed steps each."""
    results = {name: Result(row, metric, name) for name in steps}
    for name, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step()
        synchronize(device)
        if device.type == "cuda":
            results[name].peak_bytes = torch.cuda.max_memory_allocated(device)
    for _ in range(repeats):
        for name, step in steps.items():
            results[name].rates.append(items_per_step * steps_per_repeat / timed(step, device, steps_per_repeat))
    return list(results.values())


# ---- row: cloze networks -------------------------------------------------------------------

CLOZE_VARIANTS = {
    # name: (stacked execution or None for the separate U-Nets, channels_last, CUDA graph, precision)
    "reference": (None, False, False, "fp32"),  # the reference-equivalent path: separate U-Nets, eager, NCHW
    "reference_cl": (None, True, False, "fp32"),  # the same modules with channels_last tensors
    "grouped": ("grouped", False, False, "fp32"),  # stacked: all U-Nets together, grouped convolutions
    "grouped_cl": ("grouped", True, False, "fp32"),
    "sequential_cl": ("sequential", True, False, "fp32"),  # stacked weights, U-Nets one after another
    "graph_reference": (None, False, True, "fp32"),  # the separate U-Nets, step captured
    "graph_grouped": ("grouped", False, True, "fp32"),
    "graph_grouped_cl": ("grouped", True, True, "fp32"),
    "graph_sequential_cl": ("sequential", True, True, "fp32"),
    "graph_grouped_bf16": ("grouped", False, True, "bf16"),
    "graph_grouped_cl_bf16": ("grouped", True, True, "bf16"),
    "graph_sequential_cl_bf16": ("sequential", True, True, "bf16"),
    "graph_streams_cl": ("streams", True, True, "fp32"),
    "graph_streams_cl_bf16": ("streams", True, True, "bf16"),
    "graph_streams": ("streams", False, True, "fp32"),
    "graph_streams_bf16": ("streams", False, True, "bf16"),
    "compiled_grouped_cl_bf16": ("grouped", True, True, "bf16"),  # the U-Net stack through torch.compile
    "compiled_grouped_cl": ("grouped", True, True, "fp32"),
    "default": ("auto", True, True, "fp32"),  # what train.py / test.py run (make_network, TrainStep, ErrorStep)
    "default_bf16": ("auto", True, True, "bf16"),  # the same with precision = bf16
    "sequential_cl_bf16": ("sequential", True, False, "bf16"),
    "grouped_cl_bf16": ("grouped", True, False, "bf16"),
}
DEFAULT_VARIANTS = {"cpu": ["reference", "reference_cl", "grouped_cl", "default", "default_bf16"],
                    "cuda": ["reference", "grouped", "grouped_cl", "sequential_cl", "graph_reference",
                             "graph_grouped", "graph_grouped_cl", "graph_sequential_cl", "graph_grouped_bf16",
                             "graph_grouped_cl_bf16", "default", "default_bf16"]}


def make_cloze(variant: str, net: str, nf: int, padding: bool, device: torch.device) -> torch.nn.Module:
    """The same initial weights for every variant (seed 0): the stacked network takes the reference's over."""
    execution, channels_last, _, _ = CLOZE_VARIANTS[variant]
    cls, tot_of_num = (SelfCompleteNetFull, 5) if net == "full" else (SelfCompleteNet4, 1)
    torch.manual_seed(0)
    reference = cls(features_root=nf, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict", rawRange=None,
                    useFlow=True, padding=padding)
    if execution:
        model = StackedClozeNet(reference, channels_last=channels_last, execution=execution).to(device)
        if variant.startswith("compiled"):
            model.stack.compile()  # in place: the state-dict keys stay
        return model
    model = reference.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def random_cubes(batch: int, tot_of_num: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(batch, 15, 32, 32, generator=g)
    flow = torch.randn(batch, 2 * tot_of_num, 32, 32, generator=g)
    return raw.to(device), flow.to(device)


def cloze_inputs(variant: str, raw: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    execution, channels_last, _, _ = CLOZE_VARIANTS[variant]
    if execution is None and channels_last:  # the separate U-Nets see channels_last inputs
        return raw.contiguous(memory_format=torch.channels_last), flow
    return raw, flow


def reference_train_step(model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], None]:
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


def project_train_step(variant: str, model: torch.nn.Module, raw: torch.Tensor,
                       flow: torch.Tensor) -> Callable[[], object]:
    """This project's step (utils/cloze_steps.TrainStep), as train.py runs it."""
    _, _, capture, precision = CLOZE_VARIANTS[variant]
    model.train()
    return functools.partial(TrainStep(model, learning_rate=1e-3, lambda_raw=1.0, lambda_of=1.0, use_flow=True,
                                       batch_size=len(raw), device=raw.device, precision=precision, capture=capture),
                             raw, flow)


def train_step(variant: str, model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], object]:
    if variant.startswith("reference"):
        return reference_train_step(model, raw, flow)
    return project_train_step(variant, model, raw, flow)


def eval_step(variant: str, model: torch.nn.Module, raw: torch.Tensor, flow: torch.Tensor) -> Callable[[], object]:
    """The scoring pass's step: per-cube errors in eval mode (utils/cloze_steps.ErrorStep)."""
    _, _, capture, precision = CLOZE_VARIANTS[variant]
    model.eval()
    return functools.partial(ErrorStep(model, use_flow=True, batch_size=len(raw), device=raw.device,
                                       precision=precision, capture=capture), raw, flow)


def check_cloze_outputs(variants: list[str], args: argparse.Namespace, device: torch.device) -> None:
    """Before timing, every variant from the reference's weights against the reference path: its per-cube
    errors (eval mode), the losses of 3 training steps on one batch, and the per-cube errors after them.

    Single weights are not compared: Adam's first steps move each weight by about lr in the direction
    of its gradient's sign, which float rounding flips where a gradient is near zero; the function the
    weights compute (the errors) is what must agree.
    """
    tot_of_num = 5 if args.net == "full" else 1
    raw, flow = random_cubes(args.batch, tot_of_num, device, seed=1)

    def run(variant: str) -> tuple[torch.Tensor, list[float], torch.Tensor]:
        model = make_cloze(variant, args.net, args.nf, args.padding, device)
        inputs = cloze_inputs(variant, raw, flow)
        before = torch.cat(eval_step(variant, model, *inputs)())
        step = train_step(variant, model, *inputs)
        losses = []
        for _ in range(3):
            loss = step()
            losses.append(float(loss) if loss is not None else float("nan"))
        after = torch.cat(eval_step(variant, model, *inputs)())
        return before, losses, after

    def rel(got: torch.Tensor, want: torch.Tensor) -> float:
        return ((got - want).abs().max() / want.abs().max()).item()

    want_before, want_losses, want_after = run("reference")
    for variant in variants:
        before, losses, after = run(variant)
        loss_diff = max(abs(a - b) / abs(b) for a, b in zip(losses, want_losses))
        print(f"  {variant:<26} max rel diff from reference: errors {rel(before, want_before):.1e}, "
              f"3 training losses {loss_diff:.1e}, errors after them {rel(after, want_after):.1e}")


def row_cloze(args: argparse.Namespace, device: torch.device) -> list[Result]:
    variants = args.variants or DEFAULT_VARIANTS[device.type]
    if "reference" not in variants:
        variants = ["reference", *variants]
    tot_of_num = 5 if args.net == "full" else 1
    print(f"cloze networks ({args.net}, nf {args.nf}, padding {args.padding}) on {device}")
    check_cloze_outputs(variants[1:], args, device)
    results = []
    for metric, batch, make_step in (("train cubes/s", args.batch, train_step),
                                     ("eval cubes/s", args.eval_batch, eval_step)):
        raw, flow = random_cubes(batch, tot_of_num, device, seed=0)
        steps = {}
        for variant in variants:
            model = make_cloze(variant, args.net, args.nf, args.padding, device)
            steps[variant] = make_step(variant, model, *cloze_inputs(variant, raw, flow))
        results += interleaved("cloze", metric, steps, batch, device, args.warmup, args.repeats, args.steps)
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


# ---- rows: FlowNet2 and Cascade R-CNN per precision ------------------------------------------

def precision_variants(args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    """variant name → precision: "reference" (fp32) first, then each reduced precision asked for; one that
    torch.autocast does not support on the device is skipped with its reason printed."""
    variants = {"reference": "fp32"}
    for precision in args.precisions:
        if precision == "fp32":
            continue
        try:
            check_precision(precision, device)
        except VECError as err:
            print(f"  skipped: {err}")
            continue
        variants[precision] = precision
    return variants


STAND_IN = "det_fill stand-in weights (no checkpoint here or on the GPU machine): speed only, not accuracy"


def row_flownet2(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """FlowNet2 pairs/s at 512x384 as FlowNet2Flow.compute runs it (uint8 in, float32 numpy out)."""
    print(f"FlowNet2, batch {args.flow_batch} pairs of 512x384 frames, on {device}; {STAND_IN}")
    model = FlowNet2()
    model.load_state_dict(det_fill(model.state_dict()))
    model = model.to(device).eval()
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (args.flow_batch, 384, 512, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=2)

    def step(precision: str) -> Callable[[], np.ndarray]:
        @torch.inference_mode()
        def run() -> np.ndarray:  # utils/flow/flownet2.py FlowNet2Flow.compute
            pair = np.stack([first, second], axis=1)
            inputs = torch.from_numpy(pair.astype(np.float32)).permute(0, 4, 1, 2, 3).to(device)
            with autocast(precision, device):
                flow = model(inputs)
            return flow.permute(0, 2, 3, 1).float().cpu().numpy()
        return run

    steps = {name: step(precision) for name, precision in precision_variants(args, device).items()}
    results = interleaved("flownet2", "pairs/s", steps, args.flow_batch, device, args.warmup, args.repeats)
    del model, steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def row_cascade_rcnn(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Cascade R-CNN frames/s at 1333x800 as CascadeRCNNDetector runs it (BGR uint8 in, float32 numpy out)."""
    width, height = TEST_SCALE
    print(f"Cascade R-CNN R101-FPN, batch {args.det_batch} frames of {width}x{height}, score_thr 0.05, "
          f"on {device}; {STAND_IN}")
    model = CascadeRCNN()
    model.load_state_dict(det_fill(model.state_dict()))
    model = model.to(device).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.det_batch)]

    def step(precision: str) -> Callable[[], list]:
        @torch.inference_mode()
        def run() -> list:  # utils/foreground/detectors.py CascadeRCNNDetector.__call__, one batch
            inputs, shapes, factors = model.preprocess_batch(frames, TEST_SCALE)
            results = []
            with autocast(precision, device):
                feats = model.extract_feat(inputs)
                for i, (shape, factor) in enumerate(zip(shapes, factors)):
                    boxes, scores, _ = model.detect(inputs, shape, factor, 0.05, feats=feats, batch_index=i)
                    results.append(torch.cat([boxes, scores[:, None]], 1).float().cpu().numpy())
            return results
        return run

    steps = {name: step(precision) for name, precision in precision_variants(args, device).items()}
    results = interleaved("cascade_rcnn", "frames/s", steps, args.det_batch, device, args.warmup, args.repeats)
    del model, steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


ROWS: dict[str, Callable[[argparse.Namespace, torch.device], list[Result]]] = {
    "cloze": row_cloze, "flownet2": row_flownet2, "cascade_rcnn": row_cascade_rcnn}


def print_table(results: list[Result], baseline: str = "reference") -> None:
    print(f"\n{'row':<14}{'metric':<16}{'variant':<15}{'median':>10}{'ratio':>8}{'peak MiB':>10}   repeats")
    for r in results:
        base = next((b for b in results if (b.row, b.metric, b.variant) == (r.row, r.metric, baseline)), None)
        ratio = f"{r.median / base.median:.2f}x" if base else ""
        peak = f"{r.peak_bytes / 2 ** 20:.0f}" if r.peak_bytes is not None else "-"
        reps = " ".join(f"{v:.2f}" for v in r.rates)
        print(f"{r.row:<14}{r.metric:<16}{r.variant:<15}{r.median:>10.2f}{ratio:>8}{peak:>10}   {reps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=["cloze"])
    parser.add_argument("--variants", nargs="+", choices=list(CLOZE_VARIANTS), default=None,
                        help="cloze variants (default: DEFAULT_VARIANTS of the device); 'reference' is always "
                             "added: the ratios' base")
    parser.add_argument("--net", choices=("full", "net4"), default="full", help="SelfCompleteNetFull or SelfCompleteNet4")
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--padding", action="store_true", help="padding=True (15 input channels per U-Net)")
    parser.add_argument("--batch", type=int, default=128, help="training batch (cubes)")
    parser.add_argument("--eval-batch", type=int, default=128, help="eval batch (cubes)")
    parser.add_argument("--flow-batch", type=int, default=8, help="FlowNet2 row: pairs per step")
    parser.add_argument("--det-batch", type=int, default=4, help="Cascade R-CNN row: frames per step")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"), default=["fp16", "bf16"],
                        help="FlowNet2 / Cascade R-CNN rows: reduced precisions beside fp32 ('reference')")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default: cpu 1, cuda 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat (default: cpu 1, cuda 50)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: the machine's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    args.steps = args.steps if args.steps is not None else (50 if on_gpu else 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    results = []
    for row in args.rows:
        results += ROWS[row](args, device)
    print_table(results)


if __name__ == "__main__":
    main()
