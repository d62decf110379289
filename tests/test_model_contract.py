"""The model-file contract: ModelInfo writes and reads every ccstereo.* metadata key, and the exporter writes
files through it that the runtime reads back unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ccstereo.config import ModelConfig
from ccstereo.runtime.errors import ModelMetadataError
from ccstereo.runtime.model_info import ModelInfo, read_onnx_info

INFO = ModelInfo(
    Path("model.int8.onnx"),
    ModelConfig(resnet_width=16, aspp_hidden=32),
    "ab" * 32,
    "int8",
    18,
    "ccstereo-deploy 0.1.0 (torch 2.13.0, onnx 1.19.0)",
    {"int8": 47.25, "bf16": 61.5},
    {"int8": 0.00412, "bf16": 0.0001},
    {"quantised_convs": 20, "scope": "visual", "calibration_windows": 256, "calibration": "entropy"},
)


def test_props_round_trip():
    props = INFO.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) and k.startswith("ccstereo.") for k, v in props.items())
    assert ModelInfo.from_props(INFO.path, props) == INFO


def test_props_are_the_documented_keys():
    # The keys are the file format other tools (and older releases) read: written out here, not derived.
    props = INFO.to_props()
    assert set(props) == {
        "ccstereo.config",
        "ccstereo.checkpoint_sha256",
        "ccstereo.precision",
        "ccstereo.opset",
        "ccstereo.exporter",
        "ccstereo.measured_snr_db",
        "ccstereo.measured_worst_metric_change",
        "ccstereo.int8",
    }
    assert json.loads(props["ccstereo.config"])["resnet_width"] == 16
    assert props["ccstereo.opset"] == "18" and json.loads(props["ccstereo.measured_snr_db"])["int8"] == 47.25


def test_a_plain_fp32_model_writes_no_measurement_keys():
    plain = dataclasses.replace(INFO, precision="fp32", measured_snr_db={}, measured_worst_metric_change={}, int8={})
    props = plain.to_props()
    assert "ccstereo.int8" not in props and "ccstereo.measured_snr_db" not in props
    assert ModelInfo.from_props(plain.path, props) == plain


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("ccstereo.precision", "fp8", "unknown precision"),
        ("ccstereo.opset", "eighteen", "bad opset"),
        ("ccstereo.measured_snr_db", "[1, 2]", "bad ccstereo.measured_snr_db"),
        ("ccstereo.int8", "not json", "bad ccstereo.int8"),
        ("ccstereo.config", '{"resnet_width": -3}', "inconsistent model config"),
    ],
)
def test_bad_props_are_refused_naming_the_file(key, value, words):
    props = {**INFO.to_props(), key: value}
    with pytest.raises(ModelMetadataError, match=words) as err:
        ModelInfo.from_props(Path("x/model.onnx"), props)
    assert "x/model.onnx" in str(err.value)


def test_exported_files_carry_what_the_exporter_measured(exported):
    report = json.loads((exported / "export_report.json").read_text())
    fp32 = read_onnx_info(exported / "model.onnx")
    assert fp32.precision == "fp32" and fp32.checkpoint_sha256 == report["checkpoint_sha256"]
    assert fp32.config == ModelConfig.from_dict(report["config"]) and fp32.opset == report["opset"]
    if report["bf16"]["measured"]:
        assert fp32.measured_snr_db["bf16"] == pytest.approx(report["bf16"]["binaural_snr_db"], abs=0.01)
    else:  # OpenVINO could not run it here (the report says why): no figure claimed for it
        assert "bf16" not in fp32.measured_snr_db and report["bf16"]["reason"]
    assert read_onnx_info(exported / "model.fp16.onnx").precision == "fp16"
    if report["int8"]["built"]:
        int8 = read_onnx_info(exported / "model.int8.onnx")
        assert int8.precision == "int8" and int8.int8["quantised_convs"] == report["int8"]["quantised_convs"]
        assert int8.measured_snr_db["int8"] == pytest.approx(report["int8"]["offered_snr_db"], abs=0.01)
