"""FlowNet2 (Ilg et al., CVPR 2017) as used by VEC: the stacked FlowNetC → FlowNetS → FlowNetS
large-displacement branch, the FlowNetSD small-displacement branch, and their fusion."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from FlowNet2_src.components import upsample_bilinear, upsample_nearest
from FlowNet2_src.flownet_c import FlowNetC
from FlowNet2_src.flownet_fusion import FlowNetFusion
from FlowNet2_src.flownet_s import FlowNetS
from FlowNet2_src.flownet_sd import FlowNetSD
from FlowNet2_src.ops import ChannelNorm, Resample2d


class FlowNet2(nn.Module):
    """Full FlowNet2; its state-dict keys are those of the official checkpoint.

    forward(inputs): inputs (B, 3, 2, H, W), float 0..255, H and W multiples of 64 →
    flow (B, 2, H, W) in pixels, from the first image to the second.
    """

    def __init__(self, with_bn: bool = False, fp16: bool = False, rgb_max: float = 255.0,
                 div_flow: float = 20.0) -> None:
        super().__init__()
        self.with_bn, self.fp16, self.rgb_max, self.div_flow = with_bn, fp16, rgb_max, div_flow
        self.channelnorm = ChannelNorm()
        self.resample = Resample2d()
        self.flownetc = FlowNetC(with_bn=with_bn, fp16=fp16)
        self.flownets_1 = FlowNetS(with_bn=with_bn)
        self.flownets_2 = FlowNetS(with_bn=with_bn)
        self.flownets_d = FlowNetSD(with_bn=with_bn)
        self.flownetfusion = FlowNetFusion(with_bn=with_bn)

    def _refinement_input(self, images: Tensor, flow: Tensor) -> Tensor:
        """Input of a stacked FlowNetS: images, second image warped by flow, flow, brightness error."""
        warped = self.resample(images[:, 3:], flow)
        error = self.channelnorm(images[:, :3] - warped)
        return torch.cat((images, warped, flow / self.div_flow, error), 1)

    def forward(self, inputs: Tensor) -> Tensor:
        # normalise by the per-channel mean over both frames
        mean = inputs.reshape(*inputs.shape[:2], -1).mean(-1).reshape(*inputs.shape[:2], 1, 1, 1)
        x = (inputs - mean) / self.rgb_max
        images = torch.cat((x[:, :, 0], x[:, :, 1]), dim=1)
        first, second = images[:, :3], images[:, 3:]

        flow_c = upsample_bilinear(self.flownetc(images) * self.div_flow, 4)
        flow_s1 = upsample_bilinear(self.flownets_1(self._refinement_input(images, flow_c)) * self.div_flow, 4)
        flow_s2 = upsample_nearest(self.flownets_2(self._refinement_input(images, flow_s1)) * self.div_flow, 4)
        # the reference divides here where the other branches multiply; kept as trained
        flow_sd = upsample_nearest(self.flownets_d(images) / self.div_flow, 4)

        error_s2 = self.channelnorm(first - self.resample(second, flow_s2))
        error_sd = self.channelnorm(first - self.resample(second, flow_sd))
        fusion_input = torch.cat((first, flow_sd, flow_s2, self.channelnorm(flow_sd), self.channelnorm(flow_s2),
                                  error_sd, error_s2), dim=1)
        return self.flownetfusion(fusion_input)
