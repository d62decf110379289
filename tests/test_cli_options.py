"""Options are defined once: every flag of ccs-run, ccs-export and ccs-train fills a field of the options
dataclass the API takes, and its default is that field's default (the CLI cannot drift from the API)."""

from __future__ import annotations

import dataclasses
from enum import Enum

import pytest
import typer.main

from ccstereo.export.options import ExportOptions
from ccstereo.runtime.options import LoadOptions, RunOptions
from ccstereo.runtime.ray_executor import ScaleOptions
from ccstereo.train.options import TrainOptions

# Flags that say what to run on or where results go, not how: they have no options field on purpose.
NOT_OPTIONS = {
    "ccs-run": {"inputs", "out", "model", "hop_s", "report", "quiet", "view"},
    "ccs-export": {"checkpoint", "no_engine"},
    "ccs-train": {"threads"},
}
# Flags whose field has another name (the CLI's short name for it) or lives in a nested dataclass.
RENAMED = {
    "ccs-export": {
        "out": "out_dir",
        "min_batch": "profile.min_batch",
        "opt_batch": "profile.opt_batch",
        "max_batch": "profile.max_batch",
    },
    "ccs-train": {
        "resnet_width": "config.resnet_width",
        "aspp_hidden": "config.aspp_hidden",
        "visual_trunk": "config.visual_trunk",
        "lite0_blocks": "config.lite0_blocks",
        "objectness_gate": "config.objectness_gate",
        "picture_scale": "config.crop_width",  # and the other picture sizes: config.picture_sizes
    },
}
# A flag whose CLI spelling of the default differs from the field's: (CLI default, field default).
SPELLED = {
    ("ccs-export", "fp32_islands"): ("auto", None),
    ("ccs-export", "calibrate"): (None, ()),
    ("ccs-train", "picture_scale"): (1.0, 448),  # a scale of the paper's 448 x 224 crop
}


def _apps():
    from ccstereo.export.cli import app as export_app
    from ccstereo.runtime.cli import app as run_app
    from ccstereo.train.cli import app as train_app

    return {
        "ccs-run": (run_app, [LoadOptions(), RunOptions(), ScaleOptions()]),
        "ccs-export": (export_app, [ExportOptions(out_dir=None)]),  # type: ignore[arg-type]
        "ccs-train": (train_app, [TrainOptions(None, None, None)]),  # type: ignore[arg-type]
    }


def _field_default(instances, dotted: str):
    for instance in instances:
        value = instance
        try:
            for part in dotted.split("."):
                if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
                    raise KeyError(part)
                value = getattr(value, part)
        except KeyError:
            continue
        return True, value
    return False, None


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)) and not value:
        return ()
    return value


@pytest.mark.parametrize("tool", ["ccs-run", "ccs-export", "ccs-train"])
def test_every_flag_is_an_options_field_with_the_same_default(tool):
    app, instances = _apps()[tool]
    params = list(typer.main.get_command(app).params)
    assert len(params) >= 8  # the command really was read
    checked = 0
    for param in params:
        if param.name in NOT_OPTIONS[tool]:
            continue
        dotted = RENAMED.get(tool, {}).get(param.name, param.name)
        found, default = _field_default(instances, dotted)
        assert found, f"{tool} --{param.name} fills no field of {[type(i).__name__ for i in instances]}"
        if (tool, param.name) in SPELLED:
            cli_spelling, field_value = SPELLED[(tool, param.name)]
            assert _plain(param.default) == _plain(cli_spelling), f"{tool} --{param.name}"
            assert _plain(default) == _plain(field_value), f"{tool} --{param.name}"
        else:
            assert _plain(param.default) == _plain(default), (
                f"{tool} --{param.name}: CLI {param.default!r} != {default!r}"
            )
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize(
    "flag, bad, listed",
    [
        ("--backend", "cuda", ["auto", "onnxruntime", "openvino", "tensorrt", "torch"]),
        ("--precision", "fp16", ["auto", "fp32", "bf16", "int8"]),
        ("--format", "ogg", ["mp4", "mkv", "mov", "wav", "flac"]),
        ("--clip-mode", "soft", ["rescale", "clamp", "none"]),
    ],
)
def test_choices_are_checked_by_the_cli_before_anything_runs(tmp_path, flag, bad, listed):
    from typer.testing import CliRunner

    from ccstereo.runtime.cli import app

    result = CliRunner().invoke(app, [str(tmp_path / "missing.mp4"), flag, bad])
    assert result.exit_code == 2
    assert all(choice in result.output for choice in listed), result.output
