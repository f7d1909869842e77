"""FlowNet2 in plain PyTorch (pure torch.nn: it imports nothing from the app).

The four networks and the three custom layers the reference compiled as CUDA kernels.
Loading the official checkpoint and running it as a flow backend live in utils/flow/.
"""
from FlowNet2_src.flownet2 import FlowNet2
from FlowNet2_src.flownet_c import FlowNetC
from FlowNet2_src.flownet_fusion import FlowNetFusion
from FlowNet2_src.flownet_s import FlowNetS
from FlowNet2_src.flownet_sd import FlowNetSD
from FlowNet2_src.ops import ChannelNorm, Correlation, Resample2d

__all__ = ["FlowNet2", "FlowNetC", "FlowNetS", "FlowNetSD", "FlowNetFusion", "Correlation", "Resample2d",
           "ChannelNorm"]
