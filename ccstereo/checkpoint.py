"""Checkpoints: the official release format (``best_model.pth``) and our native safetensors format.

Loading never executes pickled code: torch files are read with ``weights_only=True`` and native files are
safetensors with the ``ModelConfig`` JSON in the header metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ccstereo.config import ConfigError, ModelConfig
from ccstereo.errors import CCStereoError
from ccstereo.model import CCStereo

NATIVE_FORMAT = "ccstereo-native/1"


class CheckpointError(CCStereoError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and keys."""


_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rule(pattern: str, repl: str | Callable[[re.Match[str]], str]) -> _Rule:
    return re.compile(pattern), repl


_UP = r"^net_audio\.audionet_upconvlayer(\d)\.upnorm\."
# Official key prefix -> our module path. First match wins.
_OFFICIAL_RULES: list[_Rule] = [
    _rule(r"^net_visual\.backbone\.feature_extraction\.0\.", "visual.trunk.conv1."),
    _rule(r"^net_visual\.backbone\.feature_extraction\.1\.", "visual.trunk.bn1."),
    _rule(
        r"^net_visual\.backbone\.feature_extraction\.([4-7])\.",
        lambda m: f"visual.trunk.layer{int(m.group(1)) - 3}.",
    ),
    _rule(r"^net_visual\.segment\.aspp\.", "visual.aspp."),
    _rule(r"^net_audio\.img_pos_embed\.", "audio.fusion.visual_pos."),
    _rule(r"^net_audio\.aud_pos_embed\.", "audio.fusion.audio_pos."),
    _rule(r"^net_audio\.conv1x1_rgb\.", "audio.fusion.visual_proj."),
    _rule(r"^net_audio\.transformer_cross_attention_layers\.0\.multihead_attn\.", "audio.fusion.cross_attn."),
    _rule(r"^net_audio\.transformer_cross_attention_layers\.0\.norm\.", "audio.fusion.cross_norm."),
    _rule(r"^net_audio\.transformer_self_attention_layers\.0\.self_attn\.", "audio.fusion.self_attn."),
    _rule(r"^net_audio\.transformer_self_attention_layers\.0\.norm\.", "audio.fusion.self_norm."),
    _rule(r"^net_audio\.transformer_ffn_layers\.0\.linear1\.", "audio.fusion.ffn1."),
    _rule(r"^net_audio\.transformer_ffn_layers\.0\.linear2\.", "audio.fusion.ffn2."),
    _rule(r"^net_audio\.transformer_ffn_layers\.0\.norm\.", "audio.fusion.ffn_norm."),
    _rule(r"^net_audio\.audionet_convlayer(\d)\.", r"audio.down\1."),
    _rule(r"^net_audio\.audionet_upconvlayer(\d)\.upconv\.", r"audio.up\1.conv."),
    _rule(_UP + r"param_free_norm\.", r"audio.up\1.norm.bn."),
    _rule(_UP + r"mlp_shared\.0\.", r"audio.up\1.norm.shared."),
    _rule(_UP + r"mlp_gamma\.", r"audio.up\1.norm.gamma."),
    _rule(_UP + r"mlp_beta\.", r"audio.up\1.norm.beta."),
    _rule(_UP + r"pos_embed_v$", r"audio.up\1.norm.pos_visual"),
    _rule(_UP + r"pos_embed_a$", r"audio.up\1.norm.pos_audio"),
    _rule(_UP + r"visual_conv\.", r"audio.up\1.norm.visual_proj."),
    _rule(_UP, r"audio.up\1.norm."),  # a plain BatchNorm layer
]
# Keys of the release that inference never uses (DeepLab decoder stub, AVAD's unused attention and flow conv).
_OFFICIAL_UNUSED = [
    re.compile(r"^net_visual\.segment\.reduce\."),
    re.compile(_UP + r"attn_layer\."),
    re.compile(_UP + r"flow_conv\."),
]
_WRAPPER_PREFIXES = ("module.", "autoencoder.", "model.")


def official_key_to_native(key: str) -> str | None:
    """Return our parameter name for an official key, or None when the key is unused by inference."""
    if any(p.search(key) for p in _OFFICIAL_UNUSED):
        return None
    for pattern, repl in _OFFICIAL_RULES:
        if pattern.search(key):
            return pattern.sub(repl, key, count=1)
    raise CheckpointError(f"unexpected key in official checkpoint: {key!r}")


def _shape(sd: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{path}: official checkpoint lacks {key!r}")
    return tuple(sd[key].shape)


def infer_official_config(sd: Mapping[str, torch.Tensor], path: Path) -> ModelConfig:
    """Return the ModelConfig implied by the tensor shapes of an official state dict."""
    ngf = _shape(sd, "net_audio.audionet_convlayer1.0.weight", path)[0]
    img_dim = _shape(sd, "net_visual.segment.aspp.red_conv.weight", path)[0]
    width = _shape(sd, "net_visual.backbone.feature_extraction.0.weight", path)[0]
    hidden = _shape(sd, "net_visual.segment.aspp.map_convs.0.weight", path)[0]
    avad = tuple(f"net_audio.audionet_upconvlayer{k}.upnorm.mlp_shared.0.weight" in sd for k in range(1, 5))
    kernel = 5
    for k in range(1, 5):
        key = f"net_audio.audionet_upconvlayer{k}.upnorm.mlp_shared.0.weight"
        if key in sd:
            kernel = int(sd[key].shape[-1])
    try:
        config = ModelConfig(
            ngf=ngf,
            img_dim=img_dim,
            resnet_width=width,
            aspp_hidden=hidden,
            avad_layers=avad,
            avad_kernel=kernel,
        )  # type: ignore[arg-type]
    except ConfigError as exc:
        raise CheckpointError(f"{path}: inferred configuration is inconsistent: {exc}") from exc
    tokens = _shape(sd, "net_audio.img_pos_embed.weight", path)[0]
    if tokens != config.visual_grid[0] * config.visual_grid[1]:
        raise CheckpointError(f"{path}: {tokens} visual position embeddings, expected a 7x14 grid (98)")
    return config


def _strip_wrappers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _load_into(model: CCStereo, sd: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in sd and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in sd if k not in expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    for key, value in sd.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(sd, strict=False)


def _load_official(raw: dict[str, torch.Tensor], path: Path) -> CCStereo:
    config = infer_official_config(raw, path)
    native: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        try:
            new_key = official_key_to_native(key)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        if new_key is not None:
            native[new_key] = value
    model = CCStereo(config)
    _load_into(model, native, path)
    return model


def _load_native(path: Path) -> CCStereo:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            sd = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc
    if meta.get("format") != NATIVE_FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file without CCStereo metadata (format={meta.get('format')!r})")
    try:
        config = ModelConfig.from_json(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad config in metadata: {exc}") from exc
    model = CCStereo(config)
    _load_into(model, sd, path)
    return model


def _why(exc: Exception) -> str:
    """Return torch.load's reason in one line (its message is a page of advice to load unsafely)."""
    text = str(exc)
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return "it holds pickled code, refused (" + line.split("error:", 1)[-1].strip().split(". ")[0] + ")"
    return " ".join(text.split())[:200]


def load_checkpoint(path: str | Path) -> CCStereo:
    """Return the model stored at ``path`` in eval mode with ``model.config`` set.

    Accepts the official release (``{'state_dict': {net_visual.*, net_audio.*}}``, or the bare state dict)
    and our native safetensors files written by ``save_checkpoint``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with path.open("rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte header length, then the JSON header; anything else goes to torch.load (a zip archive,
    # or the older pickle format a checkpoint saved with _use_new_zipfile_serialization=False has)
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        model = _load_native(path)
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or unsafe files
            raise CheckpointError(f"{path}: cannot be read as a weights-only torch file: {_why(exc)}") from exc
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{path}: expected a state dict of tensors")
        sd = _strip_wrappers(dict(obj))
        if not any(k.startswith(("net_visual.", "net_audio.")) for k in sd):
            raise CheckpointError(f"{path}: no net_visual.* / net_audio.* keys: not an official CCStereo checkpoint")
        model = _load_official(sd, path)
    return model.eval()


def save_checkpoint(model: CCStereo, path: str | Path, extra: Mapping[str, str] | None = None) -> Path:
    """Write ``model`` as a native safetensors checkpoint (weights + config JSON) and return the path."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": NATIVE_FORMAT, "config": model.config.to_json()}
    if extra:
        meta["extra"] = json.dumps(dict(extra), sort_keys=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    from ccstereo.atomic import writing

    with writing(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path
