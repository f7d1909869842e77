"""Speed of the pipeline's stages, each fast path against the reference-equivalent path, in ONE run.

    python benchmarks/speed.py [--device cpu|cuda] [--rows cloze flownet2 cascade_rcnn] [--batch 128] [--eval-batch 128]
                               [--flow-batch 8] [--det-batch 4] [--precisions fp16 bf16] [--repeats 5]

Row "cloze" (the cloze networks, the training step's cost): the reference-equivalent path
(SelfCompleteNetFull as the reference runs it: ten separate U-Nets, eager, fp32, NCHW)
against the variants of CLOZE_VARIANTS: the same modules in channels_last, and the stacked
network (models/stacked_cloze.py) run "grouped" (all U-Nets together, grouped convolutions),
"sequential" (one U-Net after another on views of the stacked weights) or "threads" (as
sequential, U-Nets side by side on CPU worker threads). Measured on
random cubes of the paper's shape (5 BGR patches and 5 flows of 32x32, nf 32, padding False):

- train cubes/s: forward + backward + Adam step at --batch;
- eval cubes/s: no_grad forward in eval mode at --eval-batch.

After a warm-up, the variants run interleaved (variant A, B, C, C, B, A, A, ...) --repeats
times; the table gives the median rate of each and its ratio to the reference path: the
median over repeats of the ratio within a repeat, so that a noisy or shared machine, whose
speed drifts from one repeat to the next, affects the compared variants alike. On CUDA, timings are synchronised and the
peak GPU memory of each variant is printed. Before timing, every variant is loaded with the
same weights and its outputs are compared with the reference's.

Rows "flownet2" (pairs/s at 512x384, --flow-batch pairs per step) and "cascade_rcnn"
(frames/s at the paper's 1333x800 test scale, --det-batch frames per step): the network as
the pipeline runs it (FlowNet2Flow.compute / CascadeRCNNDetector: uint8 frames in, float32
numpy out) in each precision of --precisions (flow_precision / detector_precision), where the
fp32 variant is named "reference" and is each row's ratio base; "cascade_rcnn" also times
"heads_per_frame", fp32 with the RPN head and cascade stages called frame by frame instead of
once per batch, and first prints how often the heads call their main operators either way.
Weights are det_fill stand-ins (tests/detfill.py; no checkpoint is needed), so the rows measure
speed only; the accuracy of fp16 / bf16 is benchmarks/precision.py's. No row needs tqdm or
pytest (a silent stand-in replaces tqdm where it is missing).

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
from utils.precision import check_precision  # noqa: E402


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
    names = list(steps)
    for repeat in range(repeats):
        # Every other repeat in reverse order, so that no variant always runs right after the same one.
        for name in (names if repeat % 2 == 0 else names[::-1]):
            results[name].rates.append(items_per_step * steps_per_repeat / timed(steps[name], device, steps_per_repeat))
    return list(results.values())


def paired_ratio(result: Result, base: Result) -> float:
    """Median over repeats of the rate ratio within each repeat: a drift of the machine's speed between
    repeats (±25 % on a shared virtual machine) moves both rates of a repeat, not their ratio."""
    if len(result.rates) != len(base.rates):
        return result.median / base.median
    return statistics.median(r / b for r, b in zip(result.rates, base.rates))


# ---- row: cloze networks -------------------------------------------------------------------

CLOZE_VARIANTS = {
    # name: (stacked execution or None for the separate U-Nets, channels_last, CUDA graph, precision)
    "reference": (None, False, False, "fp32"),  # the reference-equivalent path: separate U-Nets, eager, NCHW
    "reference_cl": (None, True, False, "fp32"),  # the same modules with channels_last tensors
    "grouped": ("grouped", False, False, "fp32"),  # stacked: all U-Nets together, grouped convolutions
    "grouped_cl": ("grouped", True, False, "fp32"),
    "sequential_cl": ("sequential", True, False, "fp32"),  # stacked weights, U-Nets one after another
    "threads_cl": ("threads", True, False, "fp32"),  # as sequential, U-Nets side by side on CPU worker threads
    "threads_unfused": ("threads", True, False, "fp32"),  # the same, all forwards before all backwards
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
DEFAULT_VARIANTS = {"cpu": ["reference", "reference_cl", "grouped_cl", "sequential_cl", "default", "default_bf16"],
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
        model.fuse_backward = not variant.endswith("_unfused")
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


def time_precisions(row: str, metric: str, make_step: Callable[[str], Callable[[], object]], items_per_step: int,
                    args: argparse.Namespace, device: torch.device,
                    extra: dict[str, Callable[[], object]] | None = None) -> list[Result]:
    """`make_step(precision)` for each precision variant, and the `extra` steps, timed interleaved;
    GPU memory released after."""
    steps = {name: make_step(precision) for name, precision in precision_variants(args, device).items()}
    steps.update(extra or {})
    results = interleaved(row, metric, steps, items_per_step, device, args.warmup, args.repeats)
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def row_flownet2(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """FlowNet2 pairs/s at 512x384 as FlowNet2Flow.compute runs it (uint8 in, float32 numpy out)."""
    print(f"FlowNet2, batch {args.flow_batch} pairs of 512x384 frames, on {device}; {STAND_IN}")
    model = FlowNet2()
    model.load_state_dict(det_fill(model.state_dict()))
    model = model.to(device).eval()
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (args.flow_batch, 384, 512, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=2)

    _ensure_tqdm()  # utils/flow imports it
    from utils.flow.flownet2 import FlowNet2Flow

    def step(precision: str) -> Callable[[], np.ndarray]:
        backend = FlowNet2Flow(model, str(device), precision)
        return lambda: backend.compute(first, second)

    return time_precisions("flownet2", "pairs/s", step, args.flow_batch, args, device)


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

    _ensure_tqdm()  # utils/foreground imports it
    from utils.foreground.detectors import CascadeRCNNDetector

    def step(precision: str) -> Callable[[], list]:
        detector = CascadeRCNNDetector(model, str(device), batch_size=args.det_batch, precision=precision)
        return lambda: detector(frames)

    @torch.inference_mode()
    def heads_per_frame() -> list:
        """fp32, the RPN head and the cascade stages called frame by frame (the detector before
        detect_batch): what batching the heads over the frames gains."""
        inputs, shapes, factors = model.preprocess_batch(frames)
        feats = model.extract_feat(inputs)
        return [model.detect(inputs, shape, factor, 0.05, feats=feats, batch_index=i)
                for i, (shape, factor) in enumerate(zip(shapes, factors))]

    with torch.inference_mode():
        inputs, shapes, factors = model.preprocess_batch(frames)
        feats = model.extract_feat(inputs)
        per_frame = _op_calls(lambda: [model.detect(inputs, shape, factor, 0.05, feats=feats, batch_index=i)
                                       for i, (shape, factor) in enumerate(zip(shapes, factors))])
        batched = _op_calls(lambda: model.detect_batch(inputs, shapes, factors, 0.05, feats=feats))
        del inputs, feats
    print(f"  calls of the heads (RPN head to final NMS) per batch of {args.det_batch} frames, frame by frame -> "
          "batched: " + ", ".join(f"{label} {per_frame[op]} -> {batched[op]}" for op, label in HEAD_OPS.items()))
    return time_precisions("cascade_rcnn", "frames/s", step, args.det_batch, args, device,
                           extra={"heads_per_frame": heads_per_frame})


# operator → what the count means: kernel launches (convolution, linear, RoIAlign), host-device
# synchronisations on a GPU (nonzero: boolean selection; nms: its kept-mask copy)
HEAD_OPS = {"aten::convolution": "convolution", "aten::addmm": "linear", "torchvision::roi_align": "RoIAlign",
            "aten::nonzero": "nonzero", "torchvision::nms": "NMS"}


def _op_calls(fn: Callable[[], object]) -> dict[str, int]:
    """How often each operator of HEAD_OPS runs in fn() (torch.profiler, CPU side)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        fn()
    names = [event.name for event in profile.events()]
    return {op: names.count(op) for op in HEAD_OPS}


ROWS: dict[str, Callable[[argparse.Namespace, torch.device], list[Result]]] = {
    "cloze": row_cloze, "flownet2": row_flownet2, "cascade_rcnn": row_cascade_rcnn}


def print_table(results: list[Result], baseline: str = "reference") -> None:
    print(f"\n{'row':<14}{'metric':<16}{'variant':<15}{'median':>10}{'ratio':>8}{'peak MiB':>10}   repeats")
    for r in results:
        base = next((b for b in results if (b.row, b.metric, b.variant) == (r.row, r.metric, baseline)), None)
        ratio = f"{paired_ratio(r, base):.2f}x" if base else ""
        peak = f"{r.peak_bytes / 2 ** 20:.0f}" if r.peak_bytes is not None else "-"
        reps = " ".join(f"{v:.2f}" for v in r.rates)
        print(f"{r.row:<14}{r.metric:<16}{r.variant:<15}{r.median:>10.2f}{ratio:>8}{peak:>10}   {reps}")


# ---- rows: cube extraction, end to end, training memory ---------------------------------------
#
# Row "cubes": the cube stage alone (load the box file + build_cubes) on frames, flow files
# and a box file on disk, for a UCSDped2-sized (360x240, grey as BGR, .tif) and an
# Avenue-sized (640x360, BGR, .jpg) synthetic video; boxes drawn from the reference's box
# statistics (PIPELINE_VIDEOS). Row "end_to_end": test time from frames on disk to frame
# scores with the pipeline's own functions (compute_split_flow → split_boxes → build_cubes →
# score_cubes → frame_scores) on the same videos, with a randomly initialised cloze network
# (what is measured is speed, not AUROC); per-stage seconds and frames/s. Row "memory"
# (--cubes N): a ShanghaiTech-sized synthetic cube store, and training's peak RSS in one
# child process per store size (N and N/10): the child's VmHWM (and wait4's ru_maxrss, which
# also holds this process's own peak), split into anonymous memory and the store's pages
# mapped by the memory map (page cache, growing with the cubes read, not with the cubes
# stored; the store is dropped from the page cache first). These rows have no reference-equivalent
# variant, so they give frames/s (or MiB) without ratios. Each timed repeat starts from
# empty output folders; the frames (and, for "cubes", flow files) are written once, so
# after the first read they come from the page cache, as in a second run of test.py.

# Box statistics of the reference code's box files (obj_det_with_motion, the test split:
# ../shared/reference_boxes/UCSDped2_bboxes_test_obj_det_with_motion.npy, 2010 frames, and
# avenue_bboxes_test_obj_det_with_motion.npy, 15324 frames), measured once and written here
# because the benchmark runs where ../shared is not: boxes per frame (mean, sd), natural log
# of box width and height in pixels (mean, sd). (Train splits: UCSDped2 12.2 ± 5.2 boxes per
# frame, 14.0 x 29.5 px mean; Avenue 7.9 ± 4.1, 34.7 x 112.9 px.)
PIPELINE_VIDEOS = {
    # name: frame (H, W), file type, grey, boxes per frame, log width, log height, BoxParams of config.cfg
    "UCSDped2": {"size": (240, 360), "ext": ".tif", "grey": True, "count": (17.27, 5.06),
                 "log_w": (2.660, 0.340), "log_h": (3.350, 0.258),  # mean 15.2 x 29.4 px
                 "box_params": {"score_thr": 0.5, "min_area": 100, "cover_thr": 0.6, "area_thr": 100,
                                "binary_thr": 18, "extend": 2, "blur_size": 3}},
    "avenue": {"size": (360, 640), "ext": ".jpg", "grey": False, "count": (6.81, 2.78),
               "log_w": (3.591, 0.417), "log_h": (4.706, 0.292),  # mean 40.0 x 115.9 px
               "box_params": {"score_thr": 0.25, "min_area": 1600, "cover_thr": 0.6, "area_thr": 1600,
                              "binary_thr": 18, "extend": 2, "blur_size": 5}},
}
# ShanghaiTech (no reference box file at hand): 856x480 frames, Avenue's boxes per frame and
# Avenue's box sizes scaled by 480/360 (both are street-level views of pedestrians).
SHANGHAITECH_BOXES = {"size": (480, 856), "count": (6.81, 2.78), "log_w": (3.591 + 0.288, 0.417),
                      "log_h": (4.706 + 0.288, 0.292)}
CUBE_SETTINGS = {"patch_size": 32, "context_frame_num": 4, "context_of_num": 4, "border_mode": "predict",
                 "motion_thr": 0.0, "h_block": 1, "w_block": 1, "block_mode": 1}  # the paper's (config.cfg)
_TEMP_DIRS: list[Path] = []


def _ensure_tqdm() -> None:
    """utils/ imports tqdm (progress bars); where it is not installed, a silent stand-in."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        import types

        class _NoBar:
            def __init__(self, iterable=None, *args, **kwargs) -> None:
                self.iterable = iterable

            def __iter__(self):
                return iter(self.iterable)

            def update(self, n=1) -> None:
                pass

            def set_postfix(self, *args, **kwargs) -> None:
                pass

            def close(self) -> None:
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                pass

        module = types.ModuleType("tqdm")
        module.tqdm = _NoBar
        sys.modules["tqdm"] = module
        print("note: tqdm is not installed; utils/ imports it, so a silent stand-in is used")


def _temp_dir(args: argparse.Namespace, prefix: str) -> Path:
    """A folder under --tmp-dir (the system's temporary folder by default), removed at exit."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir=args.tmp_dir))
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _TEMP_DIRS])
    _TEMP_DIRS.append(path)
    return path


def sample_boxes(stats: dict, n_frames: int, rng) -> list:
    """Per frame (n, 4) float boxes x1, y1, x2, y2 inside the frame: counts ~ normal (at least 1),
    widths and heights ~ log-normal (clipped to 4 px .. the frame), positions uniform."""
    import numpy as np

    height, width = stats["size"]
    counts = np.maximum(1, np.rint(rng.normal(*stats["count"], n_frames))).astype(int)
    frames = []
    for count in counts:
        w = np.clip(np.exp(rng.normal(*stats["log_w"], count)), 4, width - 1)
        h = np.clip(np.exp(rng.normal(*stats["log_h"], count)), 4, height - 1)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        frames.append(np.round(np.stack([x1, y1, x1 + w, y1 + h], 1), 1))
    return frames


def write_blob_video(folder: Path, name: str, n_frames: int, seed: int = 0):
    """A synthetic test video of the size of `name` (PIPELINE_VIDEOS): a textured background and
    as many textured blobs of the reference's box sizes as it has boxes per frame. The blobs move
    along horizontal lanes (one speed of 1.5-4 px per frame and direction per lane, spaced evenly,
    wrapping round at the borders), so that the motion cue finds about one box per blob rather
    than merging neighbours. Returns the VideoSplit of its frames."""
    import cv2
    import numpy as np

    from utils.datasets.split import VideoSplit

    stats = PIPELINE_VIDEOS[name]
    height, width = stats["size"]
    channels = 1 if stats["grey"] else 3
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.normal(0, 20, (height, width, channels)), (0, 0), 3).reshape(height, width, -1)
    background = background + 128 + rng.uniform(-25, 25, (1, 1, channels))
    n_blobs = int(round(stats["count"][0]))
    tall = float(np.exp(stats["log_h"][0] + 1.3 * stats["log_h"][1]))  # about the 90th percentile of heights
    lane_h = int(tall) + 12  # the gap keeps blurred, extended motion boxes of neighbouring lanes apart
    n_lanes = max(1, height // lane_h)
    blobs = []
    for lane in range(n_lanes):
        members = range(lane, n_blobs, n_lanes)
        velocity = rng.uniform(1.5, 4) * rng.choice([-1, 1])
        for k, _ in enumerate(members):
            w = int(np.clip(np.exp(rng.normal(*stats["log_w"])), 6, width // (2 * len(members))))
            h = int(np.clip(np.exp(rng.normal(*stats["log_h"])), 6, lane_h - 12))
            yy, xx = np.mgrid[:h, :w]
            shape = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
            grain = stats["box_params"]["blur_size"]  # texture in cells that the motion cue's blur keeps
            texture = rng.uniform(-50, 50, (h // grain + 1, w // grain + 1, channels))
            texture = rng.uniform(-60, -20, (1, 1, channels)) + np.kron(texture, np.ones((grain, grain, 1)))[:h, :w]
            x = (k + rng.uniform(0, 0.3)) * width / len(members)
            y = lane * lane_h + 6 + rng.integers(0, lane_h - 12 - h + 1)
            blobs.append((shape, texture, x, int(y), velocity))
    video = folder / "Test001"
    video.mkdir(parents=True)
    paths = []
    for t in range(n_frames):
        frame = background.copy()
        for shape, texture, x, y, velocity in blobs:
            h, w = shape.shape
            columns = (int(x + velocity * t) + np.arange(w)) % width
            region = frame[y:y + h, columns]
            region[shape] = 0.3 * region[shape] + 0.7 * (128 + texture[shape])
            frame[y:y + h, columns] = region
        frame = np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8)
        paths.append(video / f"{t + 1:03d}{stats['ext']}")
        cv2.imwrite(str(paths[-1]), np.repeat(frame, 3, axis=2) if channels == 1 else frame)
    return VideoSplit(folder, "test", paths, np.ones(n_frames, dtype=np.int64), ["Test001"])


def _median_stages(stages: list[dict]) -> dict:
    return {key: statistics.median(s[key] for s in stages) for key in stages[0]}


def row_cubes(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Cube extraction frames/s: load the box file + build_cubes (reading frames and flow files)."""
    _ensure_tqdm()
    import shutil

    import numpy as np

    from utils.cubes import build_cubes
    from utils.flow.store import flow_file_path
    from utils.foreground.box_files import load_box_file, save_box_file
    from utils.io import save_npy

    print(f"cube extraction (build_cubes, {args.e2e_frames} frames per video, the paper's cube settings; CPU work)")
    steps, info = {}, {}
    for name in PIPELINE_VIDEOS:
        root = _temp_dir(args, f"vec_cubes_{name}_")
        split = write_blob_video(root / "frames", name, args.e2e_frames)
        rng = np.random.default_rng(1)
        height, width = PIPELINE_VIDEOS[name]["size"]
        for i in range(len(split)):  # flow files as compute_split_flow writes them (random vectors)
            save_npy(flow_file_path(root / "flow", split, i), rng.normal(0, 2, (height, width, 2)).astype(np.float32))
        box_file = root / "frames" / "bboxes_test_obj_det_with_motion.npy"
        save_box_file(box_file, sample_boxes(PIPELINE_VIDEOS[name], len(split), rng), {})
        counter = iter(range(10 ** 9))

        def step(split=split, root=root, box_file=box_file, name=name, counter=counter) -> None:
            out = root / f"cubes_{next(counter)}"
            store = build_cubes(split, load_box_file(box_file, len(split)), root / "flow", out, progress=False,
                                **CUBE_SETTINGS)
            info[name] = len(store)
            del store
            shutil.rmtree(out)

        steps[name] = step
    results = interleaved("cubes", "frames/s", steps, args.e2e_frames, torch.device("cpu"), args.warmup,
                          args.repeats)
    for r in results:
        print(f"  {r.variant:<9} {PIPELINE_VIDEOS[r.variant]['size'][1]}x{PIPELINE_VIDEOS[r.variant]['size'][0]}: "
              f"{info[r.variant] / args.e2e_frames:.1f} cubes per frame, median {r.median:.1f} frames/s, "
              f"{r.median * info[r.variant] / args.e2e_frames:.0f} cubes/s")
    return results


def _e2e_variants(device: torch.device) -> list[tuple[str, str]]:
    """(flow method, detector): dis + motion boxes everywhere; on CUDA also FlowNet2 and Cascade R-CNN."""
    variants = [("dis", "none")]
    if device.type == "cuda":
        variants += [("flownet2", "none"), ("flownet2", "cascade_rcnn")]
    return variants


def _e2e_backend(flow: str, detector: str, device: torch.device):
    """The flow backend and detector, networks with random weights (seed 0): no checkpoint needed."""
    from utils.flow import OpenCVFlow

    torch.manual_seed(0)
    if flow == "dis":
        backend = OpenCVFlow("dis")
    else:
        from utils.flow.flownet2 import FlowNet2Flow

        backend = FlowNet2Flow(FlowNet2(), device=str(device))
    if detector == "none":
        return backend, None
    from utils.foreground.detectors import CascadeRCNNDetector

    return backend, CascadeRCNNDetector(CascadeRCNN(), device=str(device), batch_size=4)


def row_end_to_end(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Test-time frames/s from frames on disk to frame scores, stage by stage, with the pipeline's functions."""
    _ensure_tqdm()
    import shutil

    import numpy as np

    from utils.config import BoxParams, ClozeConfig
    from utils.cubes import build_cubes
    from utils.flow import compute_split_flow
    from utils.foreground import split_boxes
    from utils.scoring import frame_scores, score_cubes
    from utils.training import TrainedBlocks, make_network

    cloze = ClozeConfig(nf=args.nf)
    torch.manual_seed(0)
    state = {k: v.detach().cpu() for k, v in make_network(cloze).state_dict().items()}
    # A randomly initialised network and made-up training statistics: the scores mean nothing,
    # the work (every cube through the network) is the real one.
    trained = TrainedBlocks([[state]], [[np.array([100.0, 200.0, 300.0])]], [[np.array([10.0, 20.0, 30.0])]])
    print(f"end to end, test time: frames on disk -> flow -> boxes (obj_det_with_motion) -> cubes -> frame scores, "
          f"{args.e2e_frames} frames per video, cloze network nf {args.nf} with random weights (speed only, "
          f"no AUROC) on {device}" + ("; FlowNet2 and Cascade R-CNN with random weights" if device.type == "cuda" else ""))
    results = []
    for flow_method, detector_name in _e2e_variants(device):
        backend, detector = _e2e_backend(flow_method, detector_name, device)
        variant = ("fn2" if flow_method == "flownet2" else flow_method) + "+" + (
            "crcnn" if detector_name == "cascade_rcnn" else detector_name)
        for name, stats in PIPELINE_VIDEOS.items():
            root = _temp_dir(args, f"vec_e2e_{name}_")
            split = write_blob_video(root / "frames", name, args.e2e_frames)
            params = BoxParams(**stats["box_params"])
            stages, counts, peaks = [], [], []

            def run_once(k: int) -> tuple[float, dict]:
                work = root / f"run_{k}"
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                times, started = {}, time.perf_counter()
                compute_split_flow(split, backend, work / "flow", batch_size=8, progress=False)
                synchronize(device)
                times["flow"] = time.perf_counter() - started
                mark = time.perf_counter()
                boxes = split_boxes(split, "obj_det_with_motion", params, reuse_saved=False,
                                    detector_factory=lambda: detector, batch_size=4, progress=False)
                synchronize(device)
                times["boxes"] = time.perf_counter() - mark
                mark = time.perf_counter()
                store = build_cubes(split, boxes, work / "flow", work / "cubes", progress=False, **CUBE_SETTINGS)
                times["cubes"] = time.perf_counter() - mark
                mark = time.perf_counter()
                cube_scores = score_cubes(store, trained, cloze, str(device), progress=False)
                frame_scores(len(split), stats["size"], store.frame_index, store.boxes, cube_scores)
                synchronize(device)
                times["scores"] = time.perf_counter() - mark
                total = time.perf_counter() - started
                counts.append((sum(len(b) for b in boxes), len(store)))
                if device.type == "cuda":
                    peaks.append(torch.cuda.max_memory_allocated(device))
                del store
                shutil.rmtree(work)
                return total, times

            for k in range(args.warmup):
                run_once(-1 - k)
            result = Result("e2e", f"{'ped2' if name == 'UCSDped2' else name} frames/s", variant)
            for k in range(args.repeats):
                total, times = run_once(k)
                result.rates.append(len(split) / total)
                stages.append(times)
            result.peak_bytes = max(peaks) if peaks else None
            results.append(result)
            boxes_n, cubes_n = counts[-1]
            stage_text = ", ".join(f"{key} {value:.2f} s" for key, value in _median_stages(stages).items())
            peak = f", peak GPU memory {result.peak_bytes / 2 ** 20:.0f} MiB" if result.peak_bytes is not None else ""
            print(f"  {variant:<10} {name:<9} {boxes_n / len(split):.1f} boxes and {cubes_n / len(split):.1f} cubes "
                  f"per frame; median {stage_text}; {result.median:.1f} frames/s{peak}")
        del backend, detector
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def write_synthetic_store(directory: Path, count: int, seed: int = 0, chunk: int = 2048) -> None:
    """A CubeStore of `count` cubes in its on-disk format (utils/cubes.py), ShanghaiTech-sized
    frames and boxes (SHANGHAITECH_BOXES), every cube in block (0, 0). The raw and flow rows
    repeat one random chunk: what is measured is memory, not what the networks learn."""
    import json
    import os

    import numpy as np

    from utils.io import preallocated_npy

    rng = np.random.default_rng(seed)
    frames, total = [], 0
    while total < count:
        frames += sample_boxes(SHANGHAITECH_BOXES, 1000, rng)
        total = sum(len(f) for f in frames)
    frame_index = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(frames)])[:count]
    boxes = np.concatenate(frames)[:count]
    n_frames = int(frame_index[-1]) + 1
    p, t = CUBE_SETTINGS["patch_size"], CUBE_SETTINGS["context_frame_num"] + 1
    directory.mkdir(parents=True)
    chunks = {"raw.npy": rng.integers(0, 256, (chunk, t, 3, p, p), dtype=np.uint8),
              "flow.npy": rng.normal(0, 2, (chunk, t, 2, p, p)).astype(np.float32)}
    for name, rows in chunks.items():
        preallocated_npy(directory / name, rows.dtype, (count, *rows.shape[1:]))  # header, blocks reserved
        row_bytes = rows[0].nbytes
        with open(directory / name, "r+b") as f:  # written, not mapped: this process's RSS stays small
            f.seek(os.fstat(f.fileno()).st_size - count * row_bytes)
            for start in range(0, count, chunk):
                f.write(rows[:min(chunk, count - start)].tobytes())
            os.fsync(f.fileno())  # clean pages, which the page-cache drop below can let go
    np.savez(directory / "index.npz", frame_index=frame_index, boxes=boxes.astype(np.float64),
             blocks=np.zeros((count, 2), dtype=np.int64))
    (directory / "meta.json").write_text(json.dumps({"count": count, "n_frames": n_frames,
                                                     "frame_size": list(SHANGHAITECH_BOXES["size"]),
                                                     "settings": {"synthetic": True}}))
    if hasattr(os, "posix_fadvise"):  # out of the page cache (written and flushed: clean), as a store made earlier
        for name in ("raw.npy", "flow.npy"):
            fd = os.open(directory / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def store_bytes(count: int) -> int:
    p, t = CUBE_SETTINGS["patch_size"], CUBE_SETTINGS["context_frame_num"] + 1
    return count * (t * 3 * p * p + 4 * t * 2 * p * p + 64)


def memory_child(store_dir: str, device: str, nf: int, batch: int, steps: int, score_cubes_n: int) -> None:
    """In its own process (row_memory): train on the store for `steps` batches drawn from all its
    cubes (train_block → cube_batches; steps 0: one whole epoch), then cube_errors on
    `score_cubes_n` cubes spread over it. Prints one JSON line; the parent reads the peak RSS."""
    import json
    import threading

    _ensure_tqdm()
    import numpy as np

    from utils.config import ClozeConfig
    from utils.cubes import CubeStore
    from utils.training import cube_errors, make_network, train_block

    def status(key: str) -> int:  # kB, from /proc (Linux); 0 elsewhere
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    peak_anon, peak_file, done = [0], [0], threading.Event()

    def sample() -> None:  # the kernel keeps no high-water mark of either part: sampled every 10 ms
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], status("RssAnon"))
            peak_file[0] = max(peak_file[0], status("RssFile"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    store = CubeStore.open(Path(store_dir))
    members = store.block_members(0, 0)  # as train_blocks does
    rng = np.random.default_rng(0)
    chosen = members if steps == 0 else np.sort(rng.choice(members, min(len(members), steps * batch), replace=False))
    cloze = ClozeConfig(nf=nf, batch_size=batch, epochs=1)
    torch.manual_seed(0)
    model = make_network(cloze).to(device)
    train_block(model, store, chosen, cloze, device, torch.Generator().manual_seed(0), progress=False)
    spread = np.unique(np.linspace(0, len(store) - 1, min(len(store), score_cubes_n)).astype(np.int64))
    cube_errors(model, store, spread, batch, device, use_flow=True)
    done.set()
    sampler.join()
    peak_anon[0] = max(peak_anon[0], status("RssAnon"))
    peak_file[0] = max(peak_file[0], status("RssFile"))
    print(json.dumps({"cubes": len(store), "trained_on": len(chosen), "scored": len(spread),
                      "seconds": time.perf_counter() - started, "peak_anon_kib": peak_anon[0],
                      "peak_file_kib": peak_file[0], "rss_file_kib_at_end": status("RssFile"),
                      "vm_hwm_kib": status("VmHWM"),
                      "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None}))


def row_memory(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Training's peak RSS on a ShanghaiTech-sized store of --cubes N cubes and on one of N/10."""
    import json
    import os
    import shutil
    import subprocess

    _ensure_tqdm()
    from utils.errors import VECError
    from utils.io import require_free_space

    big = args.cubes or 270000
    sizes = [max(1, big // 10), big]
    root = _temp_dir(args, "vec_memory_")
    try:
        require_free_space(root, store_bytes(big), f"a synthetic store of {big} cubes")
    except VECError as err:
        print(f"memory row skipped: {str(err).split('; free some')[0]}; point --tmp-dir elsewhere or lower --cubes")
        return []
    steps = "one epoch" if args.cube_steps == 0 else f"{args.cube_steps} steps of {args.batch}"
    print(f"training memory (ShanghaiTech-sized synthetic stores, {store_bytes(big) / 2 ** 30:.1f} GiB for {big} "
          f"cubes): {steps} cubes drawn from the whole store (train_block), then cube_errors on {args.score_cubes} "
          f"cubes spread over it; nf {args.nf}, on {device}; one child process per store")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import speed; "
            "speed.memory_child(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:]))")
    results, peaks, anon = [], {}, {}
    for count in sizes:
        store_dir = root / f"store_{count}"
        started = time.perf_counter()
        write_synthetic_store(store_dir, count)
        written = time.perf_counter() - started
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
        with open(root / "stdout.txt", "w+") as out_file, open(root / "stderr.txt", "w+") as err_file:
            child = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).resolve().parent),
                                      str(store_dir), str(device), str(args.nf), str(args.batch), str(args.cube_steps),
                                      str(args.score_cubes)], stdout=out_file, stderr=err_file, env=env)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
            child.returncode = os.waitstatus_to_exitcode(status)
            out_file.seek(0)
            err_file.seek(0)
            out, err = out_file.read(), err_file.read()
        shutil.rmtree(store_dir, ignore_errors=True)
        if child.returncode:
            print(f"  {count} cubes: the child failed: {(err.strip().splitlines() or ['?'])[-1]}")
            continue
        report = json.loads(out.strip().splitlines()[-1])
        # The child's own high-water mark (VmHWM, Linux). wait4's ru_maxrss is printed too, but it is at
        # least this process's own peak RSS: the kernel carries the parent's high-water mark over fork + exec.
        peaks[count] = (report["vm_hwm_kib"] or usage.ru_maxrss) / 1024
        anon[count] = report["peak_anon_kib"] / 1024
        gpu = f", peak GPU {report['peak_gpu_bytes'] / 2 ** 20:.0f} MiB" if report["peak_gpu_bytes"] else ""
        print(f"  {count:>8} cubes ({report['trained_on']} trained on, store written in {written:.0f} s): "
              f"peak RSS {peaks[count]:.0f} MiB (wait4 ru_maxrss {usage.ru_maxrss / 1024:.0f}; "
              f"peak anonymous {report['peak_anon_kib'] / 1024:.0f} MiB, "
              f"peak file-backed {report['peak_file_kib'] / 1024:.0f} MiB, "
              f"{report['rss_file_kib_at_end'] / 1024:.0f} MiB at the end){gpu}, "
              f"{report['seconds']:.0f} s")
        results.append(Result("memory", "peak RSS MiB", f"{count} cubes", [peaks[count]]))
        if anon[count]:
            results.append(Result("memory", "peak anon MiB", f"{count} cubes", [anon[count]]))
    if len(peaks) == 2:
        print(f"  {big} / {sizes[0]} cubes ({big / sizes[0]:.0f}x the cubes): peak RSS ratio "
              f"{peaks[big] / peaks[sizes[0]]:.2f}" + (f", peak anonymous memory ratio {anon[big] / anon[sizes[0]]:.2f}"
                                                        if anon[sizes[0]] else ""))
        print("  (peak RSS also counts the pages of the store the memory map has touched: page cache, shared and "
              "reclaimable, growing with the cubes read; each store is dropped from the page cache before its run, "
              "since a cached page is mapped with its whole page-cache folio; anonymous memory is what the process "
              "itself allocates. Peak RSS is the child's VmHWM: wait4's ru_maxrss is never below the peak RSS of "
              "this benchmark process, whose high-water mark the kernel carries over fork + exec)")
    return results


ROWS.update({"cubes": row_cubes, "end_to_end": row_end_to_end, "memory": row_memory})


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """The options of the rows cubes, end_to_end and memory."""
    parser.add_argument("--e2e-frames", type=int, default=120,
                        help="frames of each synthetic video of the cubes and end_to_end rows")
    parser.add_argument("--cubes", type=int, default=None, metavar="N",
                        help="add the memory row: training's peak RSS on synthetic stores of N and N/10 cubes "
                             "(ShanghaiTech-sized: 270000; N cubes take N x 56 KiB of disk)")
    parser.add_argument("--cube-steps", type=int, default=200,
                        help="memory row: training steps (batches of --batch) drawn from the whole store; 0: an epoch")
    parser.add_argument("--score-cubes", type=int, default=8192, help="memory row: cubes of the cube_errors pass")
    parser.add_argument("--tmp-dir", default=None, help="where the rows' temporary files go (default: the system's)")


def finish_pipeline_options(args: argparse.Namespace) -> None:
    if args.cubes and "memory" not in args.rows:
        args.rows.append("memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pipeline_options(parser)
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
    finish_pipeline_options(args)
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
