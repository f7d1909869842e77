"""FlowNetS: flow from a plain stack of inputs (FlowNet2 uses two of them, on the warped second image)."""
from __future__ import annotations

from torch import Tensor

from FlowNet2_src.components import FlowNetBase, conv


class FlowNetS(FlowNetBase):
    """Contracting convolutions on the stacked inputs, then the shared expanding decoder.

    In FlowNet2 the input is 12 channels: both images, the second warped by the previous
    flow, that flow and the brightness error. Returns the flow at 1/4 resolution.
    """

    def __init__(self, input_channels: int = 12, with_bn: bool = False) -> None:
        super().__init__()
        self.with_bn = with_bn
        self.conv1 = conv(input_channels, 64, kernel_size=7, stride=2, with_bn=with_bn)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2, with_bn=with_bn)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2, with_bn=with_bn)
        self.conv3_1 = conv(256, 256, with_bn=with_bn)
        self._add_deep_encoder(with_bn)
        self._add_decoder(flow_upsample_bias=False, with_bn=with_bn)

    def forward(self, x: Tensor) -> Tensor:
        conv2 = self.conv2(self.conv1(x))
        return self._encode_and_decode(self.conv3_1(self.conv3(conv2)), conv2)
