"""Fold every inference-mode BatchNorm of CCStereo into the convolution before it.

The exported graph then has no BatchNormalization node: each BN becomes a per-channel scale on the preceding
conv's weights plus a bias. All BNs of this architecture follow a linear layer (Conv, ConvTranspose, or a sum /
concatenation of convs), so the fold is exact up to float rounding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ccstereo.model.attention import AudioVisualFusion
from ccstereo.model.avad import AVAD
from ccstereo.model.efficientnet import ConvBN, EfficientNetLite0Trunk
from ccstereo.model.network import CCStereo
from ccstereo.model.resnet import BasicBlock, ResNet18Trunk
from ccstereo.model.unet import AudioUNet, UpBlock
from ccstereo.model.visual import ASPP


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (scale, shift) so that bn(x) == x * scale + shift per channel in eval mode."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        shift = shift + bn.bias.double()
    return scale, shift


def _fold(
    conv: nn.Conv2d | nn.ConvTranspose2d, scale: torch.Tensor, shift: torch.Tensor, add_bias: bool = True
) -> None:
    """Scale the output channels of ``conv`` and add ``shift`` to its bias (created if absent)."""
    w = conv.weight.data.double()
    out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    shape = [1] * w.dim()
    shape[out_dim] = -1
    conv.weight.data = (w * scale.reshape(shape)).to(conv.weight.dtype)
    bias = conv.bias.data.double() if conv.bias is not None else torch.zeros_like(scale)
    new_bias = bias * scale + (shift if add_bias else 0.0)
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))


def _fold_trunk(trunk: ResNet18Trunk | EfficientNetLite0Trunk) -> None:
    if isinstance(trunk, EfficientNetLite0Trunk):
        for module in trunk.modules():
            if isinstance(module, ConvBN):
                assert isinstance(module.bn, nn.BatchNorm2d)
                _fold(module.conv, *_bn_affine(module.bn))
                module.bn = nn.Identity()
        return
    _fold(trunk.conv1, *_bn_affine(trunk.bn1))
    trunk.bn1 = nn.Identity()
    for module in trunk.modules():
        if isinstance(module, BasicBlock):
            _fold(module.conv1, *_bn_affine(module.bn1))
            _fold(module.conv2, *_bn_affine(module.bn2))
            module.bn1, module.bn2 = nn.Identity(), nn.Identity()
            if module.downsample is not None:
                _fold(module.downsample[0], *_bn_affine(module.downsample[1]))
                module.downsample[1] = nn.Identity()


def _fold_aspp(aspp: ASPP) -> None:
    scale, shift = _bn_affine(aspp.map_bn)
    width = aspp.map_convs[0].out_channels
    for i, conv in enumerate(aspp.map_convs):
        _fold(conv, scale[i * width : (i + 1) * width], shift[i * width : (i + 1) * width])
    _fold(aspp.global_pooling_conv, *_bn_affine(aspp.global_pooling_bn))
    # red_bn follows red_conv(out) + pool_red_conv(pool): scale both, add the shift once.
    scale, shift = _bn_affine(aspp.red_bn)
    _fold(aspp.red_conv, scale, shift)
    _fold(aspp.pool_red_conv, scale, shift, add_bias=False)
    aspp.map_bn = aspp.global_pooling_bn = aspp.red_bn = nn.Identity()


def _fold_unet(unet: AudioUNet) -> None:
    for i in range(1, 6):
        down = getattr(unet, f"down{i}")
        _fold(down[0], *_bn_affine(down[1]))
        down[1] = nn.Identity()
    fusion: AudioVisualFusion = unet.fusion
    _fold(fusion.visual_proj[0], *_bn_affine(fusion.visual_proj[1]))
    fusion.visual_proj[1] = nn.Identity()
    for i in range(1, 5):
        block: UpBlock = getattr(unet, f"up{i}")
        if isinstance(block.norm, AVAD):
            _fold(block.conv, *_bn_affine(block.norm.bn))
            block.norm.bn = nn.Identity()
        else:
            _fold(block.conv, *_bn_affine(block.norm))
            block.norm = nn.Identity()


def fold_batchnorms(model: CCStereo) -> CCStereo:
    """Return an eval-mode copy of ``model`` with every BatchNorm folded into its convolution."""
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        _fold_trunk(folded.visual.trunk)
        _fold_aspp(folded.visual.aspp)
        _fold_unet(folded.audio)
    remaining = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if remaining:
        raise RuntimeError(f"BatchNorm layers left unfolded: {remaining}")
    return folded
