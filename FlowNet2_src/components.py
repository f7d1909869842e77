"""Building blocks shared by the FlowNet networks (FlowNet 2.0, Ilg et al., CVPR 2017)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, with_bn: bool = False,
         with_relu: bool = True) -> nn.Sequential:
    """Convolution (+ BatchNorm) + LeakyReLU(0.1), 'same' padding: the contracting-part layer."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                         padding=(kernel_size - 1) // 2, bias=True)]
    if with_bn:
        layers.append(nn.BatchNorm2d(out_channels))
    if with_relu:
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


def deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Up-convolution of the expanding part: doubles the resolution."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=True),
                         nn.LeakyReLU(0.1, inplace=True))


def predict_flow(in_channels: int) -> nn.Conv2d:
    """3x3 convolution to a 2-channel flow estimate."""
    return nn.Conv2d(in_channels, 2, kernel_size=3, stride=1, padding=1, bias=True)


def upsample_flow(bias: bool) -> nn.ConvTranspose2d:
    """Learned 2x upsampling of a coarser flow estimate."""
    return nn.ConvTranspose2d(2, 2, kernel_size=4, stride=2, padding=1, bias=bias)


def upsample_bilinear(x: Tensor, scale: int) -> Tensor:
    # The paper's flows were computed under PyTorch 0.3, whose bilinear Upsample aligned corners.
    return nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)


def upsample_nearest(x: Tensor, scale: int) -> Tensor:
    return nn.functional.interpolate(x, scale_factor=scale, mode="nearest")


class FlowNetBase(nn.Module):
    """What FlowNetS/C/SD share: the deep contracting layers (1/16 to 1/64 resolution) and the
    expanding part that refines the flow from 1/64 to 1/4 resolution.

    In the expanding part each level concatenates the up-convolved features, the skip
    features of the contracting part and the upsampled coarser flow. Layers are registered
    under the reference's attribute names (conv4..conv6_1, deconv5..2, predict_flow6..2,
    upsampled_flow6_to_5..3_to_2, and for FlowNetSD inter_conv5..2).
    """

    levels = (5, 4, 3, 2)
    has_inter_conv = False

    def _add_deep_encoder(self, with_bn: bool) -> None:
        self.conv4 = conv(256, 512, stride=2, with_bn=with_bn)
        self.conv4_1 = conv(512, 512, with_bn=with_bn)
        self.conv5 = conv(512, 512, stride=2, with_bn=with_bn)
        self.conv5_1 = conv(512, 512, with_bn=with_bn)
        self.conv6 = conv(512, 1024, stride=2, with_bn=with_bn)
        self.conv6_1 = conv(1024, 1024, with_bn=with_bn)

    def _encode_and_decode(self, conv3: Tensor, conv2: Tensor) -> Tensor:
        """Flow at 1/4 resolution from the 1/8 features (and the 1/4 skip)."""
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, {5: conv5, 4: conv4, 3: conv3, 2: conv2})

    def _add_decoder(self, flow_upsample_bias: bool, with_bn: bool) -> None:
        # channels after concatenating skip features, up-convolved features and flow at each level
        concat = {5: 1026, 4: 770, 3: 386, 2: 194}
        deconv_in = {5: 1024, 4: 1026, 3: 770, 2: 386}
        deconv_out = {5: 512, 4: 256, 3: 128, 2: 64}
        for level in self.levels:
            setattr(self, f"deconv{level}", deconv(deconv_in[level], deconv_out[level]))
        if self.has_inter_conv:
            for level in self.levels:
                setattr(self, f"inter_conv{level}", conv(concat[level], deconv_out[level], with_bn=with_bn,
                                                         with_relu=False))
        self.predict_flow6 = predict_flow(1024)
        for level in self.levels:
            setattr(self, f"predict_flow{level}", predict_flow(deconv_out[level] if self.has_inter_conv else concat[level]))
        for level in self.levels:
            setattr(self, f"upsampled_flow{level + 1}_to_{level}", upsample_flow(flow_upsample_bias))

    def _decode(self, bottleneck: Tensor, skips: dict[int, Tensor]) -> Tensor:
        """Finest (1/4 resolution) flow from the 1/64 features and the skips of levels 5..2."""
        flow = self.predict_flow6(bottleneck)
        features = bottleneck
        for level in self.levels:
            upsampled_flow = getattr(self, f"upsampled_flow{level + 1}_to_{level}")(flow)
            features = torch.cat((skips[level], getattr(self, f"deconv{level}")(features), upsampled_flow), 1)
            head_input = getattr(self, f"inter_conv{level}")(features) if self.has_inter_conv else features
            flow = getattr(self, f"predict_flow{level}")(head_input)
        return flow
