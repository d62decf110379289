"""TensorRT engine identity on CPU: keys, sidecars, mismatch rejection, profiles; GPU parts skip."""

import json

import pytest

from ccstereo.config import ModelConfig
from ccstereo.runtime.engine_cache import (
    BatchProfile,
    EngineKey,
    check_engine,
    differences,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from ccstereo.runtime.errors import EngineMismatchError

KEY = EngineKey("ab" * 32, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "fp16", BatchProfile(1, 32, 128))


def test_profile_shapes_follow_the_config():
    shapes = BatchProfile(2, 16, 64).shapes(ModelConfig())
    assert shapes["frames"] == ((2, 224, 448, 3), (16, 224, 448, 3), (64, 224, 448, 3))
    assert shapes["mono"] == ((2, 10080), (16, 10080), (64, 10080))
    assert shapes["frame_index"] == ((2,), (16,), (64,))


@pytest.mark.parametrize("bad", [(0, 1, 2), (4, 2, 8), (1, 64, 32)])
def test_profile_rejects_unordered_bounds(bad):
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BatchProfile(*bad)


def test_plan_name_names_gpu_version_and_precision():
    assert KEY.plan_name() == "model.nvidia-h100-80gb-hbm3.10.13.0.35.fp16.plan"


def test_sidecar_round_trip(tmp_path):
    plan = tmp_path / KEY.plan_name()
    plan.write_bytes(b"engine")
    write_sidecar(plan, KEY, {"ccstereo.precision": "fp16"})
    key, meta = read_sidecar(plan)
    assert key == KEY and meta == {"ccstereo.precision": "fp16"}
    assert json.loads(sidecar_path(plan).read_text())["key"]["profile"]["opt_batch"] == 32
    assert check_engine(plan, KEY) == KEY


@pytest.mark.parametrize(
    "field, value",
    [
        ("gpu_name", "NVIDIA A100-SXM4-40GB"),
        ("tensorrt_version", "11.0.0"),
        ("compute_capability", "8.0"),
        ("onnx_sha256", "cd" * 32),
        ("profile", BatchProfile(1, 8, 64)),
    ],
)
def test_mismatch_is_refused_naming_the_difference_and_the_fix(tmp_path, field, value):
    plan = tmp_path / KEY.plan_name()
    plan.write_bytes(b"engine")
    write_sidecar(plan, KEY, {})
    here = EngineKey(**{**KEY.__dict__, field: value})
    assert [d.split(":")[0] for d in differences(KEY, here)] == [field]
    with pytest.raises(EngineMismatchError) as info:
        check_engine(plan, here)
    message = str(info.value)
    assert field in message and "ccs-export" in message and "--engine" in message


def test_missing_or_corrupt_sidecar(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(EngineMismatchError, match="no sidecar"):
        read_sidecar(plan)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="unreadable"):
        read_sidecar(plan)
