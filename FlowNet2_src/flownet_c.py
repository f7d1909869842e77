"""FlowNetC: flow from two images via a correlation of their feature maps."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from FlowNet2_src.components import FlowNetBase, conv
from FlowNet2_src.ops import Correlation


class FlowNetC(FlowNetBase):
    """Siamese feature towers, a correlation layer, then the shared expanding decoder.

    Input (B, 6, H, W): the two normalised images stacked on channels. Returns the flow at
    1/4 resolution (before FlowNet2 scales it by div_flow).
    """

    def __init__(self, with_bn: bool = False, fp16: bool = False) -> None:
        super().__init__()
        self.with_bn = with_bn
        self.conv1 = conv(3, 64, kernel_size=7, stride=2, with_bn=with_bn)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2, with_bn=with_bn)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2, with_bn=with_bn)
        self.conv_redir = conv(256, 32, kernel_size=1, stride=1, with_bn=with_bn)
        # fp16 is accepted for the reference's signature; correlation always runs in float32.
        self.corr = Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2, corr_multiply=1)
        self.corr_activation = nn.LeakyReLU(0.1, inplace=True)
        self.conv3_1 = conv(473, 256, with_bn=with_bn)  # 32 redirected + 441 correlation channels
        self._add_deep_encoder(with_bn)
        self._add_decoder(flow_upsample_bias=True, with_bn=with_bn)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        # both images through the same tower, as one batch
        conv2_both = self.conv2(self.conv1(torch.cat((x[:, :3], x[:, 3:]), 0)))
        conv3_both = self.conv3(conv2_both)
        conv2a, conv3a, conv3b = conv2_both[:batch], conv3_both[:batch], conv3_both[batch:]
        correlation = self.corr_activation(self.corr(conv3a, conv3b))
        conv3_1 = self.conv3_1(torch.cat((self.conv_redir(conv3a), correlation), 1))
        return self._encode_and_decode(conv3_1, conv2a)
