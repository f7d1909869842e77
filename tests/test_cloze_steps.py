"""`precision = bf16` of the cloze networks: what it changes (the arithmetic) and what it must not (the result)."""
import numpy as np
import pytest
import torch

from models.stacked_cloze import Threads, fused_forward_backward
from tests.conftest import PAPER_CUBES, needs_native, write_config
from utils.cloze_steps import ErrorStep, TrainStep, cube_batches
from utils.config import load_config
from utils.cubes import build_cubes
from utils.datasets import open_split
from utils.infra.errors import VECError
from utils.foreground import compute_split_boxes
from utils.pipeline import compute_flow, open_dataset_split, run_testing, run_training
from utils.infra.prefetch import prefetch
from utils.trained_model import make_network


SEEDS = (0, 1, 2)


@pytest.mark.slow
@needs_native("bf16")
def test_bf16_auroc_on_the_synthetic_data_is_within_0_005_of_fp32(tmp_path):
    """The README's main job (the built-in synthetic dataset, its config) trained and scored in fp32 and in bf16,
    with three seeds each: the means are compared. Two epochs instead of the config's eight keep the test to
    about two minutes; the networks are far past chance by then (micro AUROC ~0.977; ~0.970 at eight).

    One run per precision would compare noise: fp32 itself moves by 0.003 when only the summation order
    changes (one execution of the stacked network or another) and by up to 0.01 between seeds at eight epochs
    (0.9694 / 0.9757 / 0.9655 for seeds 0 / 1 / 2; bf16 0.9725 / 0.9707 / 0.9629).
    Measured at two epochs, seeds 0-4: fp32 0.9783 / 0.9761 / 0.9775 / 0.9779 / 0.9767, bf16 the same within
    0.0004; at three epochs within 0.0013.
    """
    config = write_config(tmp_path, epochs=2)
    cfg = load_config(config)
    for split_name in ("train", "test"):
        compute_flow(cfg, open_dataset_split(cfg, split_name), "cpu")
    auroc = {"fp32": [], "bf16": []}
    for seed in SEEDS:
        for precision in auroc:
            # Boxes and cubes are made once and reused (they do not depend on the precision or the seed);
            # each run's model and results replace the previous run's.
            cfg = load_config(config, [f"SelfComplete.precision={precision}", f"shared_parameters.seed={seed}",
                                       "synthetic.train_foreground_saved=True", "synthetic.test_foreground_saved=True"])
            run_training(cfg)
            auroc[precision].append(run_testing(cfg)["auroc_micro"])
    print("micro AUROC on the synthetic data, seeds", SEEDS, auroc)
    assert min(auroc["fp32"]) > 0.9, auroc  # a real model, not chance
    assert abs(np.mean(auroc["bf16"]) - np.mean(auroc["fp32"])) <= 0.005, auroc


@pytest.mark.parametrize("workers", [1, 2], ids=["sequential", "threads"])
def test_bf16_steps_run_in_bfloat16_and_stay_close_to_fp32(tmp_path, workers):
    cloze = load_config(write_config(tmp_path, nf=4)).cloze
    batch = (torch.rand(8, 15, 32, 32), torch.randn(8, 10, 32, 32))
    errors, losses = {}, {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        # threads: TrainStep runs the fused forward_backward, each U-Net's backward on its worker
        model = make_network(cloze, execution=Threads(workers=workers))
        assert (fused_forward_backward(model.train(), torch.device("cpu")) is not None) == (workers > 1)
        step = TrainStep(model, learning_rate=1e-3, lambda_raw=1.0, lambda_of=1.0, use_flow=True, batch_size=8,
                         device=torch.device("cpu"), precision=precision)
        losses[precision] = [step(*batch).item() for _ in range(3)]
        model.eval()
        errors[precision] = torch.cat(ErrorStep(model, use_flow=True, batch_size=8, device=torch.device("cpu"),
                                                precision=precision)(*batch))
    assert errors["bf16"].dtype == torch.float32  # errors are summed in float32 whatever the forward ran in
    assert not torch.equal(errors["bf16"], errors["fp32"])  # bf16 did run: its rounding shows
    assert losses["bf16"][0] != losses["fp32"][0]  # in the training step too
    # bfloat16 keeps 8 bits of mantissa: ~0.4% per rounding; errors are sums over 5,120 values.
    np.testing.assert_allclose(errors["bf16"], errors["fp32"], rtol=0.05)
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.05)


def test_unknown_precision_is_one_line(tmp_path):
    config = write_config(tmp_path)
    with pytest.raises(VECError, match="precision") as err:
        load_config(config, ["SelfComplete.precision=fp8"])
    assert "\n" not in str(err.value) and "bf16" in str(err.value)


def test_cube_batches_equal_the_store_rows_in_the_shuffled_order(small_synthetic, tmp_path):
    cfg = small_synthetic  # shared by other tests: nothing is written into its folders
    split = open_split(cfg.dataset_dir, "UCSDped2", "train")
    boxes = compute_split_boxes(split, "obj_det_with_motion", cfg.dataset.boxes, None, progress=False)
    store = build_cubes(split, boxes, cfg.flow_dir, tmp_path / "cubes", PAPER_CUBES, progress=False)
    indices = np.arange(len(store))
    order = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(5)).numpy()]
    batches = list(cube_batches(store, indices, 7, "cpu", torch.Generator().manual_seed(5)))
    assert len(batches) == -(-len(store) // 7)
    for k, (raw, flow) in enumerate(batches):
        rows = np.sort(order[7 * k:7 * k + 7])
        expected_raw = torch.from_numpy(np.asarray(store.raw[rows])).flatten(1, 2).float() / 255.0
        assert torch.equal(raw, expected_raw)
        assert torch.equal(flow, torch.from_numpy(np.asarray(store.flow[rows])).flatten(1, 2).float())


def test_prefetch_yields_in_order_and_raises_the_readers_error():
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise VECError("flow file x.npy is truncated")

    got = []
    with pytest.raises(VECError, match="truncated"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]
    # A consumer that stops early leaves no thread behind blocked on a full queue.
    items = prefetch(iter(range(1000)), depth=1)
    assert next(items) == 0
    items.close()
