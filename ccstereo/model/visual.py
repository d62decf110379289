"""Visual encoder: a trunk (ResNet-18 as the official model, or EfficientNet-Lite0) followed by an ASPP head
reducing to ``img_dim`` channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccstereo.config import ModelConfig
from ccstereo.model.efficientnet import EfficientNetLite0Trunk
from ccstereo.model.resnet import ResNet18Trunk


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3) with an image-level pooling branch.

    Four parallel convolutions (1x1 and three dilated 3x3) are concatenated, normalised and reduced to
    ``out_ch``; the globally pooled branch is reduced separately and added before the final BatchNorm.
    Activations are LeakyReLU with slope 0.01.
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        convs = [nn.Conv2d(in_ch, hidden, 1, bias=False)]
        convs += [nn.Conv2d(in_ch, hidden, 3, padding=d, dilation=d, bias=False) for d in dilations]
        self.map_convs = nn.ModuleList(convs)
        self.map_bn = nn.BatchNorm2d(hidden * len(convs))
        self.global_pooling_conv = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.global_pooling_bn = nn.BatchNorm2d(hidden)
        self.red_conv = nn.Conv2d(hidden * len(convs), out_ch, 1, bias=False)
        self.pool_red_conv = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.red_bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([conv(x) for conv in self.map_convs], dim=1)
        out = self.red_conv(F.leaky_relu(self.map_bn(out), 0.01))
        pool = x.mean(dim=(2, 3), keepdim=True)
        pool = F.leaky_relu(self.global_pooling_bn(self.global_pooling_conv(pool)), 0.01)
        out = out + self.pool_red_conv(pool)  # broadcast over the spatial grid
        return F.leaky_relu(self.red_bn(out), 0.01)


class VisualEncoder(nn.Module):
    """[B, 3, 224, 448] ImageNet-normalised RGB -> [B, img_dim, 7, 14] (a cut EfficientNet-Lite0 trunk may take the
    crop at half that size: ``ModelConfig.visual_stride`` 16)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.trunk: ResNet18Trunk | EfficientNetLite0Trunk
        if config.visual_trunk == "efficientnet_lite0":
            self.trunk = EfficientNetLite0Trunk(
                config.imagenet_mean, config.imagenet_std, config.lite0_blocks, config.visual_stride
            )
        else:
            self.trunk = ResNet18Trunk(config.resnet_width)
        self.aspp = ASPP(self.trunk.out_channels, config.img_dim, config.aspp_hidden, config.aspp_dilations)
        self.objectness = nn.Conv2d(config.img_dim, 1, 1) if config.objectness_gate else None

    def gate(self, features: torch.Tensor) -> torch.Tensor:
        """Return the ASPP features [B, C, h, w], each cell times its objectness (with ``objectness_gate``)."""
        if self.objectness is None:
            return features
        return features * torch.sigmoid(self.objectness(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.aspp(self.trunk(x)))
