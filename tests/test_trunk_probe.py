"""benchmarks/trunk_probe.py's score: the side of a probe's map against the side of the truth's box."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.train.data import objectness_map

ROOT = Path(__file__).resolve().parents[1]


def _probe_module():
    spec = importlib.util.spec_from_file_location("trunk_probe", ROOT / "benchmarks" / "trunk_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_map_of_the_truths_box_is_on_its_side_and_its_mirror_image_is_not():
    """Maps drawn from the boxes themselves (a perfect probe) score 100 %, their mirror images 0 %; objects
    within 24 px of the centre are not counted."""
    side_score = _probe_module().side_score
    cfg, rng = ModelConfig(), np.random.default_rng(5)
    x0, y0 = (cfg.resize_width - cfg.crop_width) // 2, (cfg.resize_height - cfg.crop_height) // 2
    maps, offsets = [], []
    for _ in range(60):
        w, cx = rng.uniform(30, 120), rng.uniform(x0 + 40, x0 + cfg.crop_width - 40)
        box = (cx - w / 2, 60.0, cx + w / 2, 160.0)
        maps.append(objectness_map([box], x0, y0, cfg) + 1e-3)  # a faint floor everywhere, as a sigmoid leaves
        offsets.append(cx - x0 - cfg.crop_width / 2)
    maps, offsets = np.stack(maps), np.array(offsets)
    decided = int((np.abs(offsets) > 24).sum())
    right = side_score(maps, offsets)
    assert right["side"] == 1.0 and right["frames"] == decided and right["corr"] > 0.95
    wrong = side_score(maps[:, :, ::-1], offsets)
    assert wrong["side"] == 0.0 and wrong["corr"] < -0.95
    flat = side_score(np.ones_like(maps), offsets)  # a map that says nothing is on neither side
    assert flat["side"] == 0.0
