"""FlowNetS: flow from a plain stack of inputs (FlowNet2 uses two of them, on the warped second image)."""
from __future__ import annotations

from torch import Tensor

from FlowNet2_src.components import FlowDecoder, conv


class FlowNetS(FlowDecoder):
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
        self.conv4 = conv(256, 512, stride=2, with_bn=with_bn)
        self.conv4_1 = conv(512, 512, with_bn=with_bn)
        self.conv5 = conv(512, 512, stride=2, with_bn=with_bn)
        self.conv5_1 = conv(512, 512, with_bn=with_bn)
        self.conv6 = conv(512, 1024, stride=2, with_bn=with_bn)
        self.conv6_1 = conv(1024, 1024, with_bn=with_bn)
        self._add_decoder(flow_upsample_bias=False, with_bn=with_bn)

    def forward(self, x: Tensor) -> Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, {5: conv5, 4: conv4, 3: conv3, 2: conv2})
