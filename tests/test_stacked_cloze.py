"""The stacked cloze network (all used U-Nets as one) equals the reference's separate U-Nets.

Same weights in (det_fill through the reference keys), same outputs out, in train and eval
mode and after Adam steps (parameters and per-U-Net BatchNorm statistics mapped back);
golden vectors reproduced; state dicts in the reference's keys, order, shapes and values.
"""
import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from models import SelfCompleteNet4, SelfCompleteNetFull, strip_data_parallel_prefix
from models.stacked_cloze import (Auto, Grouped, Prepacked, Sequential, StackedClozeNet, StackedSelfCompleteNet4,
                                   StackedSelfCompleteNetFull, Streams, Threads, fused_forward_backward)
from models.stacked_cloze.prepacked import PackedStack
from models.stacked_cloze.stack import cat_per_unet
from support.stand_in_weights import det_fill
from utils.cloze_steps import TrainStep

DATA = Path(__file__).parent / "data"
REL = 1e-4  # tolerance, relative to each tensor's largest magnitude
F64_REL = 1e-7  # the same in float64

# (network, tot_of_num, rawRange, padding, useFlow)
CASES = [(cls, of, raw_range, padding, True) for cls, of in ((SelfCompleteNetFull, 5), (SelfCompleteNet4, 1))
         for raw_range in (None, 2) for padding in (False, True)]
CASES += [(SelfCompleteNetFull, 5, None, False, False), (SelfCompleteNet4, 1, 4, True, False),
          (SelfCompleteNet4, 1, 4, False, True)]  # Net4's flow U-Net serves position 4 only


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tiny networks are op-launch bound; on a shared CPU, OpenMP's 2-thread barriers made them ~50x
    slower. One thread keeps the file fast; the numerics compared are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def case_id(case):
    cls, _, raw_range, padding, use_flow = case
    return f"{cls.__name__}-rawRange{raw_range}-padding{padding}-useFlow{use_flow}"


# The CPU executions; "threads" with 3 worker threads whatever the thread count (this file runs at one);
# "prepacked" with each batch shared out over 2 workers (in training, and in float64, it runs grouped).
EXECUTIONS = {"sequential": Sequential, "grouped": Grouped, "threads": lambda: Threads(workers=3), "auto": Auto,
              "prepacked": lambda: Prepacked(workers=2)}
CPU_EXECUTIONS = ["sequential", "grouped", "threads", "prepacked"]


@functools.cache
def stand_in_weights(cls, tot_of_num, raw_range, padding, use_flow, nf):
    """det_fill's weights for the reference network (made once per architecture; loading copies them)."""
    reference = cls(features_root=nf, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict",
                    rawRange=raw_range, useFlow=use_flow, padding=padding)
    return det_fill(reference.state_dict())


def make_reference(cls, tot_of_num, raw_range, padding, use_flow, nf=4, dtype=torch.float32):
    """The reference network with det_fill weights."""
    reference = cls(features_root=nf, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict",
                    rawRange=raw_range, useFlow=use_flow, padding=padding)
    reference.load_state_dict(stand_in_weights(cls, tot_of_num, raw_range, padding, use_flow, nf))
    return reference.to(dtype)


@functools.cache
def _loaded_stacked(cls, tot_of_num, raw_range, padding, use_flow, nf, channels_last):
    """A stacked network loaded with the reference's det_fill weights, built once per architecture (building
    one costs more than the steps the tests run on it); make_stacked hands out copies, never this one."""
    stacked = StackedClozeNet(cls(features_root=nf, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict",
                                  rawRange=raw_range, useFlow=use_flow, padding=padding), channels_last=channels_last)
    stacked.load_state_dict(stand_in_weights(cls, tot_of_num, raw_range, padding, use_flow, nf))
    return stacked


def make_stacked(cls, tot_of_num, raw_range, padding, use_flow, nf=4, channels_last=True, dtype=torch.float32,
                 execution="auto"):
    """A stacked network (run by EXECUTIONS[execution]) loaded with the reference's det_fill weights."""
    stacked = copy.deepcopy(_loaded_stacked(cls, tot_of_num, raw_range, padding, use_flow, nf, channels_last))
    stacked.execution = EXECUTIONS[execution]()
    return stacked.to(dtype)


def make_pair(cls, tot_of_num, raw_range, padding, use_flow, nf=4, channels_last=True, dtype=torch.float32,
              execution="auto"):
    """The reference network and a stacked one (run by EXECUTIONS[execution]), both with det_fill's weights
    loaded through the reference's keys."""
    return (make_reference(cls, tot_of_num, raw_range, padding, use_flow, nf, dtype),
            make_stacked(cls, tot_of_num, raw_range, padding, use_flow, nf, channels_last, dtype, execution))


def inputs(tot_of_num, batch=6, size=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 15, size, size, generator=g, dtype=dtype),
            torch.randn(batch, 2 * tot_of_num, size, size, generator=g, dtype=dtype))


def assert_close(got, want, name, rel=REL):
    assert got.shape == want.shape and got.dtype == want.dtype, name
    if not want.is_floating_point():
        assert torch.equal(got, want), name
        return
    scale = max(want.abs().max().item(), 1e-30)
    diff = (got - want).abs().max().item()
    assert diff <= rel * scale, f"{name}: max |diff| {diff:.3g} > {rel} x {scale:.3g}"


def assert_outputs_close(got, want):
    for name, g, w in zip(("of_outputs", "raw_outputs", "of_targets", "raw_targets"), got, want):
        if isinstance(w, list):
            assert g == [] and w == [], name
        else:
            assert g.is_contiguous(), name
            assert_close(g, w, name)


def assert_states_close(got, want, rel=REL):
    assert list(got) == list(want)
    for key in want:
        assert_close(got[key], want[key], key, rel)


# What the separate U-Nets compute, once per case: every execution is compared with the same numbers.
# Read only (the tests compare with them, never change them).

@functools.cache
def reference_forward(case, mode):
    """The reference's outputs of one forward in `mode`, and its state dict after it."""
    reference = getattr(make_reference(*case), mode)()
    with torch.no_grad():
        outputs = reference(*inputs(case[1]))
    return outputs, reference.state_dict()


@functools.cache
def reference_backward(case):
    """float64: the reference's training loss and gradients of one train-mode step, and its state dict after it."""
    reference = make_reference(*case, dtype=torch.float64).train()
    loss = training_loss(reference, *inputs(case[1], dtype=torch.float64))
    loss.backward()
    return loss.item(), {k: p.grad for k, p in reference.named_parameters()}, reference.state_dict()


@functools.cache
def reference_adam(case, dtype):
    """The reference after adam_steps in `dtype`: the losses, the state dict, and its eval-mode outputs."""
    reference = make_reference(*case, dtype=dtype)
    x, x_of = inputs(case[1], dtype=dtype)
    losses = adam_steps(reference, x, x_of)
    with torch.no_grad():
        outputs = reference.eval()(x, x_of)
    return losses, reference.state_dict(), outputs


@pytest.mark.parametrize("execution", CPU_EXECUTIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_equals_separate_unets(case, mode, execution):
    stacked = make_stacked(*case, execution=execution)
    want_outputs, want_state = reference_forward(case, mode)
    getattr(stacked, mode)()
    with torch.no_grad():
        assert_outputs_close(stacked(*inputs(case[1])), want_outputs)
    # Train mode updated each U-Net's BatchNorm statistics (and counted the batch) as the reference did.
    assert_states_close(stacked.state_dict(), want_state)


def training_loss(model, x, x_of):
    """train.py's loss: MSE(raw) + MSE(flow) (lambda_raw = lambda_of = 1)."""
    mse = torch.nn.MSELoss()
    of_out, raw_out, of_target, raw_target = model(x, x_of)
    return mse(raw_out, raw_target) + (mse(of_out, of_target) if isinstance(of_out, torch.Tensor) else 0)


def adam_steps(model, x, x_of, steps=3, eps=1e-7):
    """train.py's step: Adam (lr 1e-3; eps 1e-7 there), zero_grad, backward, step; returns the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=eps, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = training_loss(model, x, x_of)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def feeds_batchnorm(key):
    """The bias of a conv followed by a BatchNorm (DoubleConv's convs 0 and 3): in train mode BatchNorm
    subtracts it again, so its exact gradient is zero and what backward returns is rounding noise."""
    return key.endswith(("conv.0.bias", "conv.3.bias"))


@pytest.mark.parametrize("execution", CPU_EXECUTIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float64_gradients_and_adam_steps_equal_separate_unets(case, execution):
    """In float64 the two computations agree to ~1e-9 and better: the same mathematics, train.py's Adam settings.

    (Why parameters are not compared in float32: test_float32_training_steps_follow_separate_unets.)
    """
    stacked = make_stacked(*case, dtype=torch.float64, execution=execution)
    x, x_of = inputs(case[1], dtype=torch.float64)
    training_loss(stacked.train(), x, x_of).backward()
    _, want, _ = reference_backward(case)
    got = stacked.map_to_reference({k: p.grad for k, p in stacked.named_parameters()})
    assert list(got) == list(want)
    for key, w in want.items():
        assert (got[key] is None) == (w is None), key  # unused U-Nets get no gradient, as in the reference
        if w is None:
            continue
        if feeds_batchnorm(key):  # both rounding noise, far below the gradient of the conv's weight
            scale = want[key[:-len("bias")] + "weight"].abs().max().item()
            assert max(got[key].abs().max().item(), w.abs().max().item()) <= F64_REL * scale, key
        else:
            assert_close(got[key], w, key, rel=F64_REL)

    stacked = make_stacked(*case, dtype=torch.float64, execution=execution)
    want_losses, want_state, want_outputs = reference_adam(case, torch.float64)
    np.testing.assert_allclose(adam_steps(stacked, x, x_of), want_losses, rtol=1e-12)
    assert_states_close(stacked.state_dict(), want_state, rel=F64_REL)
    with torch.no_grad():
        assert_outputs_close(stacked.eval()(x, x_of), want_outputs)


@pytest.mark.parametrize("execution", CPU_EXECUTIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float32_training_steps_follow_separate_unets(case, execution):
    """float32, train.py's Adam from the same weights: the same losses and BatchNorm counters.

    Parameters are compared in float64 (above), not here: float32 rounding differs between any two
    summation orders (grouped or separate convolutions, or the separate U-Nets themselves in NCHW or
    channels_last: gradients differ by ~1e-5..1e-4 relative either way), and Adam does not keep such
    differences small. The biases that feed a BatchNorm have an exact gradient of zero (see
    feeds_batchnorm), so float32 backward returns rounding noise for them, larger than Adam's
    eps = 1e-7, and Adam moves each by about lr in a direction set by that noise; and a ReLU or
    max-pool that flips on a 1e-9 difference changes a gradient outright.
    """
    stacked = make_stacked(*case, execution=execution)
    want_losses, want_state, _ = reference_adam(case, torch.float32)
    np.testing.assert_allclose(adam_steps(stacked, *inputs(case[1])), want_losses, rtol=REL)
    counters = [k for k in want_state if k.endswith("num_batches_tracked")]
    got_state = stacked.state_dict()
    assert all(torch.equal(got_state[k], want_state[k]) for k in counters)


def train_steps(model, x, x_of, use_flow, steps=3):
    """utils/cloze_steps.TrainStep, as train.py runs it (lambda_raw = lambda_of = 1); returns the losses."""
    step = TrainStep(model.train(), learning_rate=1e-3, lambda_raw=1.0, lambda_of=1.0, use_flow=use_flow,
                     batch_size=len(x), device=x.device)
    return [step(x, x_of).item() for _ in range(steps)]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward_on_threads_equals_separate_unets(case):
    """The training step of the threads execution (each U-Net's backward right after its forward, on its
    worker): float64 gradients, 3 Adam steps through TrainStep, and float32 losses as the reference's."""
    stacked = make_stacked(*case, dtype=torch.float64, execution="threads")
    use_flow = stacked.stack.n_flow > 0  # train.py's flow loss, where a flow U-Net serves a position in rawRange
    x, x_of = inputs(case[1], dtype=torch.float64)
    assert fused_forward_backward(stacked.eval(), x.device) is None
    # One U-Net (e.g. Net4 at rawRange 2: its flow U-Net serves position 4) runs sequentially, unfused.
    assert (fused_forward_backward(stacked.train(), x.device) is not None) == (stacked.stack.groups > 1)
    if stacked.stack.groups > 1:
        assert_forward_backward_equals_backward(case, stacked, x, x_of, use_flow)

    stacked = make_stacked(*case, dtype=torch.float64, execution="threads")
    want_losses, want_state, _ = reference_adam(case, torch.float64)
    np.testing.assert_allclose(train_steps(stacked, x, x_of, use_flow), want_losses, rtol=1e-12)
    assert_states_close(stacked.state_dict(), want_state, rel=F64_REL)

    stacked = make_stacked(*case, execution="threads")
    want_losses, _, _ = reference_adam(case, torch.float32)
    np.testing.assert_allclose(train_steps(stacked, *inputs(case[1]), use_flow), want_losses, rtol=REL)


def assert_forward_backward_equals_backward(case, stacked, x, x_of, use_flow):
    want_loss, want, want_state = reference_backward(case)
    step = TrainStep(stacked.train(), learning_rate=1e-3, lambda_raw=1.0, lambda_of=1.0, use_flow=use_flow,
                     batch_size=len(x), device=x.device)
    got_loss = fused_forward_backward(stacked.train(), x.device)(x, x_of, step._loss_term)
    assert not got_loss.requires_grad
    np.testing.assert_allclose(got_loss.item(), want_loss, rtol=1e-12)
    got = stacked.map_to_reference({k: p.grad for k, p in stacked.named_parameters()})
    for key, w in want.items():
        assert (got[key] is None) == (w is None), key
        if w is not None and not feeds_batchnorm(key):
            assert_close(got[key], w, key, rel=F64_REL)
    assert_states_close(stacked.state_dict(), want_state, rel=F64_REL)  # BatchNorm statistics


def test_forward_backward_refuses_other_executions():
    sequential = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="sequential")
    unfused = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="threads")
    unfused.execution = Threads(workers=3, fuse_backward=False)  # benchmarks/rows/cloze.py's threads_unfused
    fused = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="threads")
    x, x_of = inputs(5)
    for stacked in (sequential, unfused):
        assert fused_forward_backward(stacked.train(), x.device) is None  # TrainStep runs forward, then backward
    # Asked directly, the threads execution refuses to run a step it does not run.
    cases = [(unfused, "train", unfused.execution), (fused, "eval", fused.execution),
             (fused, "train", Threads(workers=1))]  # one worker: sequential
    for stacked, mode, execution in cases:
        with pytest.raises(RuntimeError, match="threads execution"):
            execution.forward_backward(getattr(stacked, mode)(), x, x_of,
                                       lambda kind, output, target, count: output.sum())


@pytest.mark.parametrize("cls, tot_of_num", [(SelfCompleteNetFull, 5), (SelfCompleteNet4, 1)])
@pytest.mark.parametrize("padding", [False, True])
def test_nchw_path_equals_separate_unets(cls, tot_of_num, padding):
    reference, stacked = make_pair(cls, tot_of_num, None, padding, True, channels_last=False)
    x, x_of = inputs(tot_of_num)
    with torch.no_grad():
        assert_outputs_close(stacked.train()(x, x_of), reference.train()(x, x_of))
        assert_outputs_close(stacked.eval()(x, x_of), reference.eval()(x, x_of))
    stacked = make_stacked(cls, tot_of_num, None, padding, True, channels_last=False, dtype=torch.float64)
    want_losses, want_state, _ = reference_adam((cls, tot_of_num, None, padding, True), torch.float64)
    np.testing.assert_allclose(adam_steps(stacked, *inputs(tot_of_num, dtype=torch.float64)), want_losses, rtol=1e-12)
    assert_states_close(stacked.state_dict(), want_state, rel=F64_REL)


@pytest.mark.parity
@pytest.mark.parametrize("golden, cls, tot_of_num, raw_range", [
    ("selfcomplete_full_of5_nf8.npz", SelfCompleteNetFull, 5, None),
    ("selfcomplete_net4_of1_nf8.npz", SelfCompleteNet4, 1, None),
    ("selfcomplete_full_of5_rawRange2_nf8.npz", SelfCompleteNetFull, 5, 2),
])
@pytest.mark.parametrize("channels_last, execution", [(True, "auto"), (False, "auto"), (True, "prepacked")])
def test_golden_vectors(golden, cls, tot_of_num, raw_range, channels_last, execution):
    """Each way of running the stacked network in eval mode against the reference's outputs; "prepacked",
    what live scoring runs on a CPU, folds BatchNorm, fuses ReLU and packs the weights (one worker)."""
    data = np.load(DATA / golden)
    model = StackedClozeNet(cls(features_root=8, tot_raw_num=5, tot_of_num=tot_of_num, border_mode="predict",
                                rawRange=raw_range, useFlow=True, padding=False), channels_last=channels_last)
    model.load_state_dict(det_fill(model.state_dict()))  # the reference's keys and shapes
    model.execution = Prepacked() if execution == "prepacked" else Auto()
    model.eval()
    with torch.no_grad():
        outputs = model(torch.from_numpy(data["x"]), torch.from_numpy(data["x_of"]))
    for name, value in zip(("of_outputs", "raw_outputs", "of_targets", "raw_targets"), outputs):
        np.testing.assert_allclose(value.numpy(), data[name], atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("cls, tot_of_num, raw_range, use_flow", [
    (SelfCompleteNetFull, 5, None, True), (SelfCompleteNetFull, 5, 2, True), (SelfCompleteNet4, 1, None, True),
    (SelfCompleteNet4, 1, 1, True), (SelfCompleteNetFull, 5, None, False)])
def test_state_dict_round_trip_is_the_reference_state_dict(cls, tot_of_num, raw_range, use_flow):
    reference, stacked = make_pair(cls, tot_of_num, raw_range, False, use_flow, nf=8)
    reference.train()(*inputs(tot_of_num))  # non-trivial running statistics and counters
    stacked.load_state_dict(reference.state_dict())
    want, got = reference.state_dict(), stacked.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
        # Compact tensors: torch.save writes this U-Net's values only, not the whole stacked storage.
        assert got[key].is_contiguous() and got[key].untyped_storage().nbytes() == got[key].numel() * got[key].element_size()
    # ... and the reference code loads it strictly.
    fresh = cls(features_root=8, tot_raw_num=5, tot_of_num=tot_of_num, rawRange=raw_range, useFlow=use_flow,
                padding=False)
    fresh.load_state_dict(got)
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())


def test_data_parallel_prefix_and_strict_loading():
    reference, stacked = make_pair(SelfCompleteNet4, 1, None, False, True, nf=4)
    saved = torch.nn.DataParallel(stacked).state_dict()
    assert list(saved) == ["module." + k for k in reference.state_dict()]
    fresh = StackedSelfCompleteNet4(features_root=4, padding=False)
    fresh.load_state_dict(strip_data_parallel_prefix(saved))
    assert all(torch.equal(v, saved["module." + k]) for k, v in fresh.state_dict().items())
    incomplete = dict(reference.state_dict())
    del incomplete["up41.conv.conv.3.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(incomplete)


@pytest.mark.parametrize("stacked_cls, cls, tot_of_num", [(StackedSelfCompleteNetFull, SelfCompleteNetFull, 5),
                                                           (StackedSelfCompleteNet4, SelfCompleteNet4, 1)])
def test_same_seed_same_initial_weights_and_random_state(stacked_cls, cls, tot_of_num):
    torch.manual_seed(7)
    reference = cls(features_root=4, tot_of_num=tot_of_num, rawRange=3, padding=False)
    after_reference = torch.get_rng_state()
    torch.manual_seed(7)
    stacked = stacked_cls(features_root=4, tot_of_num=tot_of_num, rawRange=3, padding=False)
    assert torch.equal(torch.get_rng_state(), after_reference)
    got = stacked.state_dict()
    assert_states_close(got, reference.state_dict())
    assert all(torch.equal(got[k], v) for k, v in reference.state_dict().items())


def test_cat_per_unet_concatenates_inside_each_block():
    skip, up = torch.randn(2, 3 * 4, 5, 5), torch.randn(2, 3 * 2, 5, 5)
    want = torch.cat([torch.cat([skip[:, 4 * g:4 * g + 4], up[:, 2 * g:2 * g + 2]], 1) for g in range(3)], 1)
    assert torch.equal(cat_per_unet(skip, up, 3), want)
    got = cat_per_unet(skip.contiguous(memory_format=torch.channels_last),
                       up.contiguous(memory_format=torch.channels_last), 3)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)


def test_training_uses_the_stacked_network_by_default():
    from utils.config import load_config
    from utils.trained_model import make_network

    cloze = load_config(Path(__file__).resolve().parent.parent / "config.cfg").cloze
    assert isinstance(make_network(cloze), StackedClozeNet)
    separate = make_network(cloze, stacked=False)
    assert not isinstance(separate, StackedClozeNet)
    assert list(make_network(cloze).state_dict()) == list(separate.state_dict())


def test_worker_threads_leave_the_callers_thread_count():
    """Workers set their own intra-op thread count; the caller's, and that of threads started later, stay."""
    import threading

    from models.stacked_cloze.threads import UNetWorkers

    torch.set_num_threads(2)
    try:
        workers = UNetWorkers(2, 1)
        assert workers.map(lambda slot: torch.get_num_threads(), range(4)) == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
        later = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]
        workers.pool.shutdown()
    finally:
        torch.set_num_threads(1)


def test_threads_follow_the_callers_autocast_and_grad_mode():
    threaded = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="threads")
    sequential = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="sequential")
    x, x_of = inputs(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = threaded.train()(x, x_of), sequential.train()(x, x_of)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
    assert got[1].dtype == torch.bfloat16 and got[1].requires_grad
    torch.testing.assert_close(got[1].float(), want[1].float(), rtol=0, atol=0.02)
    got[1].float().sum().backward()  # the workers' graphs, in bfloat16; the flow outputs unused
    (want[1].float().sum()).backward()
    for (name, p), (_, q) in zip(threaded.stack.named_parameters(), sequential.stack.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name  # the flow heads get none, as sequentially
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0.05 * q.grad.abs().max().item(), msg=name)
    with torch.no_grad():
        assert not threaded.eval()(x, x_of)[1].requires_grad


@pytest.mark.parametrize("case", CASES[:4], ids=case_id)
def test_prepacked_follows_batch_sizes_weight_changes_and_bf16_autocast(case):
    stacked, grouped = make_stacked(*case, execution="prepacked"), make_stacked(*case, execution="grouped")
    stacked.execution = Prepacked()  # one worker: the whole batch in one call
    stacked.eval(), grouped.eval()
    with torch.no_grad():
        for batch in (6, 1, 9):  # packed for the first batch's size, run on others
            x, x_of = inputs(case[1], batch=batch, seed=batch)
            assert_outputs_close(stacked(x, x_of), grouped(x, x_of))
        for network in (stacked, grouped):  # new weights (an optimiser step, a load): packed again
            network.stack.inc.conv.conv[0].weight.mul_(1.5)
            network.stack.up3.conv.conv[4].running_var.mul_(2.0)
        assert_outputs_close(stacked(x, x_of), grouped(x, x_of))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, want = stacked(x, x_of), grouped(x, x_of)
        for name, g, w in zip(("of_outputs", "raw_outputs"), got, want):
            if isinstance(w, torch.Tensor):
                assert g.dtype == w.dtype == torch.bfloat16, name
                assert_close(g.float(), w.float(), name, rel=0.05)  # bf16 keeps 8 bits: rounding apart
    assert [type(v) for v in stacked.execution._packed.values()] == [PackedStack]  # one copy, replaced


def test_eval_on_a_cpu_runs_convolution_batchnorm_and_relu_fused():
    """The fused path is the one test_forward_equals_separate_unets[eval] compared with the reference."""
    from models.stacked_cloze.one_unet import fused_inference

    x = torch.rand(2, 12, 8, 8)
    with torch.no_grad():
        assert fused_inference(x, training=False)
        assert not fused_inference(x, training=True) and not fused_inference(x.double(), training=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused_inference(x, training=False)
    assert not fused_inference(x, training=False)  # grad enabled: autograd needs the separate operations


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_gradients_are_the_transposed_convolutions(channels_last):
    """On a CPU the decoder's transposed convolution takes its weight gradient from the adjoint
    strided convolution (models/stacked_cloze/upsample.py): output and every gradient equal autograd's
    through F.conv_transpose2d (float64)."""
    from torch.nn import functional as F

    from models.stacked_cloze.upsample import upsample

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64, generator=generator)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(8, 4, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    grad = torch.randn(3, 4, 10, 10, dtype=torch.float64, generator=generator)
    results = []
    for fn in (upsample, lambda *a: F.conv_transpose2d(*a, stride=2, padding=1, output_padding=1)):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = fn(*leaves)
        results.append([out, *torch.autograd.grad(out, leaves, grad)])
    assert results[0][0].grad_fn.name().startswith("_UpsampleCPU")  # the custom backward ran, not autograd's
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_an_error_on_a_worker_reaches_the_caller():
    threaded = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="threads")
    with pytest.raises(RuntimeError):
        threaded.train()(torch.rand(2, 15, 12, 12), torch.rand(2, 10, 12, 12))  # 12 is not divisible by 8


@pytest.mark.parametrize("threads, workers", [(1, 1), (2, 2), (3, 1), (4, 2), (8, 2), (10, 10), (20, 10)])
def test_threads_default_worker_count_keeps_every_thread_busy(threads, workers):
    stacked = make_stacked(SelfCompleteNetFull, 5, None, False, True, execution="auto")  # 10 U-Nets
    torch.set_num_threads(threads)
    try:
        assert Threads().worker_count(stacked.stack.groups) == workers
        resolved = stacked.execution.resolve(torch.device("cpu"), stacked.stack.groups)
        assert resolved.name == ("threads" if workers > 1 else "sequential")
    finally:
        torch.set_num_threads(1)


def test_default_execution_is_chosen_by_device():
    """A new network runs Auto: streams on a GPU, threads on a CPU (sequential with one worker, as
    this file's one thread gives), sequential elsewhere; an explicit Streams on a CPU runs threads."""
    stacked = StackedSelfCompleteNet4(features_root=4, padding=False)
    assert isinstance(stacked.execution, Auto)
    groups = stacked.stack.groups
    assert stacked.execution.resolve(torch.device("cuda"), groups).name == "streams"
    assert stacked.execution.resolve(torch.device("cpu"), groups).name == "sequential"  # one thread: one worker
    assert stacked.execution.resolve(torch.device("meta"), groups).name == "sequential"
    assert Threads(workers=2).resolve(torch.device("cpu"), groups).name == "threads"
    assert Streams().resolve(torch.device("cpu"), groups).name == "sequential"
    assert Streams().resolve(torch.device("cuda"), groups).name == "streams"
    torch.set_num_threads(2)
    try:
        assert Streams().resolve(torch.device("cpu"), groups).name == "threads"
        assert stacked.execution.resolve(torch.device("cpu"), groups).name == "threads"
    finally:
        torch.set_num_threads(1)
