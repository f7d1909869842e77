"""flow_precision / detector_precision: fp16 / bf16 under torch.autocast, measured against fp32 on the golden inputs.

The bounds come from benchmarks/precision.py and the measurements quoted at each test (CPU, torch 2.14,
AVX-512 with AMX-BF16 and AVX512-FP16, 1 thread) with about 3x headroom; fp32 itself is covered by the
parity tests of test_flownet2.py and test_cascade_rcnn.py, which run with no autocast context at all.
"""
import contextlib
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

from FlowNet2_src import ChannelNorm, Correlation, Resample2d
from tests.conftest import REPO, needs_native, write_config
from tests.matching import assert_same_boxes
from utils.cloze_steps import ErrorStep
from utils.config import load_config
from utils.infra.errors import VECError
from utils.flow import build_flow_backend
from utils.flow.flownet2 import FlowNet2Flow
from utils.foreground import CascadeRCNNDetector, build_detector
from utils.infra.precision import autocast, check_precision, emulated_on_this_cpu
from utils.infra.prefetch import read_ahead

from tests.test_cascade_rcnn import GOLDEN, IMG_SHAPE, SCALE_FACTOR
from tests.test_flownet2 import FORWARD, OPS


def _supported(precision):
    try:
        check_precision(precision, "cpu")
        return True
    except VECError:
        return False


REDUCED = [pytest.param(p, marks=pytest.mark.skipif(not _supported(p), reason=f"no {p} autocast on this CPU"))
           for p in ("bf16", "fp16")]
# Whole FlowNet2 passes in half precision: only where this CPU has oneDNN kernels for it.
REDUCED_NATIVE = [pytest.param(p, marks=[*param.marks, needs_native(p)]) for param, p in zip(REDUCED, ("bf16", "fp16"))]


@pytest.fixture(scope="module")
def flownet2(flownet2_golden):
    return flownet2_golden  # det_fill weights, built once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def flownet2_fp32_flow(flownet2_golden_flow):
    return flownet2_golden_flow  # the fp32 flow of the golden pair, computed once per session


@pytest.fixture(scope="module")
def cascade(cascade_golden):
    return cascade_golden


# ---- FlowNet2 ------------------------------------------------------------------------------------

# End-point error against fp32 on the golden pair (|flow| 0.86 px on average), measured:
#   bf16 mean 0.0047 px, max 0.0255 px;  fp16 mean 0.0006 px, max 0.0034 px.
EPE_BOUNDS = {"bf16": (0.015, 0.08), "fp16": (0.002, 0.01)}


@pytest.mark.parametrize("precision", REDUCED_NATIVE)
def test_reduced_precision_flow_within_measured_epe_of_fp32(flownet2, flownet2_fp32_flow, precision):
    inputs, reference = torch.from_numpy(FORWARD["inputs"]), flownet2_fp32_flow
    with torch.inference_mode():
        with autocast(precision, "cpu"):  # as FlowNet2Flow.compute runs it
            flow = flownet2(inputs).float()
    assert torch.isfinite(flow).all()
    epe = torch.linalg.vector_norm(flow - reference, dim=1)
    mean_bound, max_bound = EPE_BOUNDS[precision]
    assert epe.mean() <= mean_bound and epe.max() <= max_bound, (epe.mean().item(), epe.max().item())


@pytest.mark.parametrize("precision", REDUCED)
def test_flownet2_ops_stay_float32_under_autocast(precision):
    """Correlation, Resample2d and ChannelNorm compute in float32 under autocast (ops.py says why): on float32
    inputs they give the fp32 results exactly, and in float32."""
    corr = Correlation(20, 1, 20, 1, 2, 1)
    ops = [(corr, (OPS["corr_flownetc_in1"], OPS["corr_flownetc_in2"])),
           (Resample2d(), (OPS["resample_img"], OPS["resample_flow"])),
           (ChannelNorm(), (OPS["channelnorm_in"],))]
    for op, arrays in ops:
        inputs = [torch.from_numpy(a) for a in arrays]
        expected = op(*inputs)
        with autocast(precision, "cpu"):
            got = op(*inputs)
            from_half = op(*(t.to(torch.bfloat16 if precision == "bf16" else torch.float16) for t in inputs))
        assert got.dtype == torch.float32 and torch.equal(got, expected), type(op).__name__
        assert torch.isfinite(from_half).all(), type(op).__name__


@pytest.mark.slow  # a FlowNet2 pass at 512x384
@needs_native("bf16")
def test_flow_backend_in_bf16_returns_float32_flow_at_frame_size(flownet2):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (1, 60, 90, 3), dtype=np.uint8)
    backend = FlowNet2Flow(flownet2, precision="bf16")
    flow = backend(first, np.roll(first, 2, axis=2))
    assert flow.shape == (1, 60, 90, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


# ---- Cascade R-CNN -------------------------------------------------------------------------------

# The cascade heads in bf16 on the golden features and proposals (box decoding, NMS and scores in float32),
# against fp32, measured: 99 of 100 detections paired (one near-tie at the top-100 cut swaps on each side),
# paired boxes within 1.38 px, scores within 0.030.
BF16_CASCADE_TOL = dict(min_iou=0.9, box_atol=4.0, score_atol=0.1, max_unmatched=3)


@needs_native("bf16")
def test_bf16_cascade_matches_fp32_as_sets(cascade):
    feats = [torch.from_numpy(GOLDEN[f"neck_p{level}"]) for level in range(2, 7)]
    proposals = torch.from_numpy(GOLDEN["proposals"])
    with torch.inference_mode():
        expected = cascade.roi_head.predict(feats, proposals, IMG_SHAPE, SCALE_FACTOR, 0.0)
        with autocast("bf16", "cpu"):
            got = cascade.roi_head.predict(feats, proposals, IMG_SHAPE, SCALE_FACTOR, 0.0)
    assert got[0].dtype == got[1].dtype == torch.float32
    assert_same_boxes(*(t.numpy() for pair in zip(got, expected) for t in pair), what="bf16 cascade vs fp32",
                      **BF16_CASCADE_TOL)


# End to end, the stand-in weights saturate the RPN's objectness (the top proposals all score 0.99999), so
# which proposals survive NMS is decided by rounding and the detection SETS of bf16 and fp32 diverge (see
# docs/performance.md); what is checked end to end is that the detector works in bf16: FPN features within
# a measured bound of fp32 (max |diff| 1.4 % of the largest feature), float32 boxes inside the frame.
@pytest.mark.slow  # R101 passes
@needs_native("bf16")
def test_bf16_detector_end_to_end(cascade, cascade_golden_feats):
    inputs, reference = torch.from_numpy(GOLDEN["inputs"]), cascade_golden_feats  # fp32 features, made once
    with torch.inference_mode():
        with autocast("bf16", "cpu"):
            feats = cascade.extract_feat(inputs)
    for level, (f, r) in enumerate(zip(feats, reference), start=2):
        assert (f.float() - r).abs().max() <= 0.04 * r.abs().max(), f"P{level}"
    frame = GOLDEN["image_bgr"]
    detections = CascadeRCNNDetector(cascade, score_thr=0.0, scale=(384, 256), precision="bf16")([frame])[0]
    assert detections.dtype == np.float32 and detections.shape == (100, 5) and np.isfinite(detections).all()
    assert detections[:, :4].min() >= 0 and detections[:, 2].max() <= frame.shape[1]
    assert detections[:, 3].max() <= frame.shape[0]
    assert (np.diff(detections[:, 4]) <= 0).all()


# ---- settings ------------------------------------------------------------------------------------

def test_fp32_runs_without_autocast():
    assert isinstance(autocast("fp32", "cpu"), contextlib.nullcontext)
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")


def test_config_precision_keys(tmp_path):
    path = write_config(tmp_path)
    cfg = load_config(path)
    assert cfg.dataset.flow_precision == cfg.dataset.detector_precision == "fp32"
    cfg = load_config(path, ["synthetic.flow_method=flownet2", "synthetic.flow_precision=bf16",
                             "synthetic.detector=cascade_rcnn", "synthetic.detector_precision=bf16"])
    assert cfg.dataset.flow_precision == cfg.dataset.detector_precision == "bf16"
    with pytest.raises(VECError) as err:
        load_config(path, ["synthetic.flow_precision=fp8"])
    assert str(err.value) == "--set synthetic.flow_precision = 'fp8' is not one of fp32, fp16, bf16"
    with pytest.raises(VECError, match="applies to flow_method = flownet2 only, not dis") as err:
        load_config(path, ["synthetic.flow_precision=bf16"])  # the synthetic set uses DIS
    with pytest.raises(VECError, match="applies to detector = cascade_rcnn only, not none"):
        load_config(path, ["synthetic.detector_precision=fp16"])
    assert "\n" not in str(err.value)


@pytest.mark.slow  # a real Python process (oneDNN reads its ISA limit once per process): its imports take seconds
def test_precision_without_onednn_kernels_on_this_cpu_warns_in_one_line(tmp_path):
    """bf16 with oneDNN held to AVX2 (a CPU without AVX-512) falls back to generic loops: a warning, not an error
    (the results stay right). oneDNN reads its ISA limit once, so the limited case runs in a child process."""
    # One child process does both: the check on its own (turned into an error, printed on stdout), then
    # test.py's main, whose stderr is the process's stderr.
    config = write_config(tmp_path)
    probe = ("import sys, warnings; from utils.infra.precision import check_precision, emulated_on_this_cpu\n"
             "print(emulated_on_this_cpu('bf16', 'cpu'))\n"
             "with warnings.catch_warnings():\n"
             "    warnings.simplefilter('error')\n"
             "    try:\n"
             "        check_precision('bf16', 'cpu')\n"
             "    except Warning as warning:\n"
             "        print('raised:', warning)\n"
             "sys.path.insert(0, '.'); from test import main\n"
             f"sys.exit(main(['--config', {str(config)!r}, '--set', 'synthetic.flow_method=flownet2', "
             "'--set', 'synthetic.flow_precision=bf16']))\n")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    limited = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
    emulated, raised = limited.stdout.strip().splitlines()
    assert emulated == "True" and raised.startswith("raised: ")
    assert "precision = bf16" in raised and "emulated" in raised and "use fp32" in raised
    # In a script: one line, "warning: ...", then the work goes on (here to test.py's missing-model error).
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 2 and lines[0].startswith("warning: flow_precision = bf16:"), limited.stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in limited.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_precision("fp32", "cpu")  # fp32 never warns
        assert not emulated_on_this_cpu("bf16", "cuda")  # only CPU kernels are in question


def test_precision_for_other_backends_or_unsupported_devices_is_an_error():
    with pytest.raises(VECError, match="flow_method = flownet2 only"):
        build_flow_backend("dis", precision="bf16")
    with pytest.raises(VECError, match="detector = cascade_rcnn only"):
        build_detector("mmdet", checkpoint=None, config=None, device="cpu", batch_size=1, precision="fp16")
    with pytest.raises(VECError, match="is not one of fp32, fp16, bf16"):
        check_precision("fp8", "cpu")
    with pytest.raises(VECError, match="precision = fp16 is not one of fp32, bf16"):  # the cloze steps' choices
        ErrorStep(torch.nn.Identity(), use_flow=True, batch_size=1, device="cpu", precision="fp16")
    if not torch.cuda.is_available():  # autocast turns itself off on a device that is not there
        with pytest.raises(VECError, match="not supported by torch .* autocast on cuda"):
            check_precision("fp16", "cuda")


# ---- reading ahead -------------------------------------------------------------------------------

def test_read_ahead_keeps_order_overlaps_and_raises_as_a_loop_would():
    main = threading.get_ident()
    seen = []
    started_reading = {i: threading.Event() for i in range(4)}

    def read(item, previous):
        started_reading[item].set()
        seen.append((item, previous, threading.get_ident() != main))
        return item * 10

    out = []
    for item, value in read_ahead(range(4), read):
        # The "network" works on this item while the next one is read: that read starts without
        # the loop giving control back (a generous wait: it is reached only when reading does not overlap).
        if item + 1 < 4:
            assert started_reading[item + 1].wait(timeout=30), f"item {item + 1} was not read while {item} was worked on"
        out.append((item, value))
    assert out == [(i, i * 10) for i in range(4)]
    assert [(i, p) for i, p, _ in seen] == [(0, None), (1, 0), (2, 10), (3, 20)] and all(t for *_, t in seen)

    def failing(item, previous):
        if item == 2:
            raise VECError("frame 2 is unreadable")
        return item

    done = []
    with pytest.raises(VECError, match="^frame 2 is unreadable$"):
        for item, _ in read_ahead(range(4), failing):
            done.append(item)
    assert done == [0, 1]  # the items before the bad one were processed, as in a plain loop
