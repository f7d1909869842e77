"""FlowNet2 in plain PyTorch: the networks, the custom ops, the official checkpoint, the flow backend."""
from FlowNet2_src.checkpoint import load_flownet2
from FlowNet2_src.flownet2 import FlowNet2
from FlowNet2_src.flownet_c import FlowNetC
from FlowNet2_src.flownet_fusion import FlowNetFusion
from FlowNet2_src.flownet_s import FlowNetS
from FlowNet2_src.flownet_sd import FlowNetSD
from FlowNet2_src.ops import ChannelNorm, Correlation, Resample2d

__all__ = ["FlowNet2", "FlowNetC", "FlowNetS", "FlowNetSD", "FlowNetFusion", "Correlation", "Resample2d",
           "ChannelNorm", "load_flownet2", "FlowNet2Estimator"]


def __getattr__(name):
    # the estimator imports utils.flow, which is only needed when flow is computed
    if name == "FlowNet2Estimator":
        from FlowNet2_src.estimator import FlowNet2Estimator

        return FlowNet2Estimator
    raise AttributeError(name)
