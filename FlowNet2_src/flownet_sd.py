"""FlowNetSD: FlowNetS for small displacements (no stride in the first layer, 3x3 kernels)."""
from __future__ import annotations

from torch import Tensor

from FlowNet2_src.components import FlowNetBase, conv


class FlowNetSD(FlowNetBase):
    """Contracting part with an extra full-resolution layer; the decoder smooths each level
    with an intermediate convolution before predicting flow. Input: the two images (6 ch)."""

    has_inter_conv = True

    def __init__(self, with_bn: bool = False) -> None:
        super().__init__()
        self.with_bn = with_bn
        self.conv0 = conv(6, 64, with_bn=with_bn)
        self.conv1 = conv(64, 64, stride=2, with_bn=with_bn)
        self.conv1_1 = conv(64, 128, with_bn=with_bn)
        self.conv2 = conv(128, 128, stride=2, with_bn=with_bn)
        self.conv2_1 = conv(128, 128, with_bn=with_bn)
        self.conv3 = conv(128, 256, stride=2, with_bn=with_bn)
        self.conv3_1 = conv(256, 256, with_bn=with_bn)
        self._add_deep_encoder(with_bn)
        self._add_decoder(flow_upsample_bias=True, with_bn=with_bn)

    def forward(self, x: Tensor) -> Tensor:
        conv1 = self.conv1_1(self.conv1(self.conv0(x)))
        conv2 = self.conv2_1(self.conv2(conv1))
        return self._encode_and_decode(self.conv3_1(self.conv3(conv2)), conv2)
