"""ResNet-101 (C2-C5) and the feature pyramid (P2-P6) of Cascade R-CNN R101-FPN."""
from __future__ import annotations

from typing import Sequence

import torchvision
from torch import Tensor, nn


class ResNetBackbone(nn.Module):
    """torchvision's ResNet-101 (its Bottleneck puts the stride on the 3x3 conv, mmdet's 'pytorch'
    style) without the classifier; returns C2-C5. Keep it in eval mode: BatchNorm uses its
    stored statistics, as mmdet's frozen backbone does."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet101(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class _ConvModule(nn.Module):
    """A bare convolution registered as `.conv`, matching mmcv ConvModule's key names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FeaturePyramid(nn.Module):
    """FPN: 1x1 laterals, nearest top-down addition, 3x3 outputs; P6 = max-pool(P5, 1, stride 2)."""

    def __init__(self, in_channels: Sequence[int] = (256, 512, 1024, 2048), out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(_ConvModule(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                                          mode="nearest")
        outputs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        outputs.append(nn.functional.max_pool2d(outputs[-1], 1, stride=2))
        return outputs
