"""FlowNetFusion: merges the large- and small-displacement flows at full resolution."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from FlowNet2_src.components import conv, deconv, predict_flow, upsample_flow


class FlowNetFusion(nn.Module):
    """A small encoder-decoder over (image 1, both flows, their magnitudes, their
    brightness errors): 11 channels in, the final flow out at input resolution."""

    def __init__(self, with_bn: bool = False) -> None:
        super().__init__()
        self.with_bn = with_bn
        self.conv0 = conv(11, 64, with_bn=with_bn)
        self.conv1 = conv(64, 64, stride=2, with_bn=with_bn)
        self.conv1_1 = conv(64, 128, with_bn=with_bn)
        self.conv2 = conv(128, 128, stride=2, with_bn=with_bn)
        self.conv2_1 = conv(128, 128, with_bn=with_bn)
        self.deconv1 = deconv(128, 32)
        self.deconv0 = deconv(162, 16)
        self.inter_conv1 = conv(162, 32, with_bn=with_bn, with_relu=False)
        self.inter_conv0 = conv(82, 16, with_bn=with_bn, with_relu=False)
        self.predict_flow2 = predict_flow(128)
        self.predict_flow1 = predict_flow(32)
        self.predict_flow0 = predict_flow(16)
        self.upsampled_flow2_to_1 = upsample_flow(bias=True)
        self.upsampled_flow1_to_0 = upsample_flow(bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))
        flow2 = self.predict_flow2(conv2)
        concat1 = torch.cat((conv1, self.deconv1(conv2), self.upsampled_flow2_to_1(flow2)), 1)
        flow1 = self.predict_flow1(self.inter_conv1(concat1))
        concat0 = torch.cat((conv0, self.deconv0(concat1), self.upsampled_flow1_to_0(flow1)), 1)
        return self.predict_flow0(self.inter_conv0(concat0))
