"""FlowNet2 in plain PyTorch equals the reference (golden vectors from its CUDA ops and network)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from FlowNet2_src import ChannelNorm, Correlation, Resample2d
from utils.flow.flownet2 import FlowNet2Flow, load_flownet2
from utils.infra.errors import VECError

DATA = Path(__file__).parent / "data"
OPS = np.load(DATA / "flownet2_ops.npz")
FORWARD = np.load(DATA / "flownet2_forward.npz")


def _t(key):
    return torch.from_numpy(OPS[key])


def test_state_dict_equals_official_checkpoint_keys(flownet2_golden):
    manifest = json.loads((DATA / "flownet2_manifest.json").read_text())
    assert [[k, list(v.shape)] for k, v in flownet2_golden.state_dict().items()] == manifest


@pytest.mark.parity
def test_correlation_matches_cuda_kernel():
    out = Correlation(20, 1, 20, 1, 2, 1)(_t("corr_flownetc_in1"), _t("corr_flownetc_in2"))
    np.testing.assert_allclose(out.numpy(), OPS["corr_flownetc_out"], atol=1e-5, rtol=0)
    pad, kernel, displacement, stride1, stride2 = OPS["corr_k3_args"].tolist()
    out = Correlation(pad, kernel, displacement, stride1, stride2, 1)(_t("corr_k3_in1"), _t("corr_k3_in2"))
    np.testing.assert_allclose(out.numpy(), OPS["corr_k3_out"], atol=1e-5, rtol=0)


@pytest.mark.parity
def test_resample_and_channelnorm_match_cuda_kernels():
    np.testing.assert_allclose(Resample2d()(_t("resample_img"), _t("resample_flow")).numpy(), OPS["resample_out"],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(ChannelNorm()(_t("channelnorm_in")).numpy(), OPS["channelnorm_out"], atol=1e-5, rtol=0)


# FlowNet2 has no discrete step (no sorting, no thresholds): compared element-wise. Measured across CPU kernels
# (tests/noise_report.py: oneDNN/ATen/MKL at AVX-512, AVX2, SSE4.1; 1 or 2 threads) the full forward lies within
# 3.0e-6 of the largest golden value and the ops within 2.4e-7 absolute; 1e-4 and 1e-5 leave >= 30x headroom.
def _assert_golden_flow(flow):
    expected = FORWARD["flow"]
    np.testing.assert_allclose(flow, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parity
def test_full_network_matches_reference(flownet2_golden_flow):
    """The det_fill model's flow of FORWARD["inputs"] (tests/conftest.py: computed once per session)."""
    _assert_golden_flow(flownet2_golden_flow.numpy())


@pytest.mark.parity
@pytest.mark.slow  # writes and reads a 650 MB checkpoint, then a full pass
def test_official_checkpoint_structure_loads_and_reproduces_golden_flow(tmp_path, flownet2_golden):
    path = tmp_path / "FlowNet2_checkpoint.pth.tar"
    # The det_fill weights, as the session's golden model holds them (det_fill itself takes seconds).
    torch.save({"state_dict": flownet2_golden.state_dict(), "epoch": 0, "best_EPE": 1.0}, path)
    model = load_flownet2(path)
    assert not model.training
    with torch.no_grad():
        _assert_golden_flow(model(torch.from_numpy(FORWARD["inputs"])).numpy())


def test_missing_or_wrong_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(VECError, match="flow_method = dis") as err:
        load_flownet2(tmp_path / "FlowNet2_checkpoint.pth.tar")
    assert "FlowNet2_checkpoint.pth.tar" in str(err.value)
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(VECError, match="does not hold FlowNet2's weights"):
        load_flownet2(tmp_path / "other.pth")


@pytest.mark.slow  # two FlowNet2 passes at 512x384
def test_estimator_returns_flow_at_frame_size(flownet2_golden):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (2, 60, 90, 3), dtype=np.uint8)
    flow = FlowNet2Flow(flownet2_golden)(first, np.roll(first, 2, axis=2))
    assert flow.shape == (2, 60, 90, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
