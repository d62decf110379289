"""The bundled default model and sample: the README's first command works with no --model."""

import json
import subprocess
import sys
from pathlib import Path

import av

from ccstereo.runtime.backends import default_model_path
from ccstereo.runtime.model_info import read_onnx_info

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample.mp4"


def test_bundled_model_is_small_and_self_describing():
    path = default_model_path()
    assert path.stat().st_size <= 32 * 1024 * 1024
    info = read_onnx_info(path)
    assert info.precision == "fp32" and info.config.resnet_width < 64
    assert info.measured_snr_db["bf16"] >= 35.0  # the CPU reduced precisions were measured at export
    report = json.loads(path.with_name("export_report.json").read_text())
    assert report["checkpoint_sha256"] == info.checkpoint_sha256
    int8_path = path.with_name("model.int8.onnx")
    if not int8_path.exists():  # an int8 graph is bundled only where the export measured one accurate enough
        assert report["int8"]["built"] is False and report["int8"]["reason"]
        return
    int8 = read_onnx_info(int8_path)
    assert int8.precision == "int8" and int8.config == info.config and int8.measured_snr_db["int8"] >= 35.0
    assert int8.checkpoint_sha256 == info.checkpoint_sha256


def test_readme_first_command_binauralises_the_bundled_sample(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert "ccs-run samples/sample.mp4" in readme.split("<!-- test-command -->")[0]
    result = subprocess.run(
        [sys.executable, "-m", "ccstereo.runtime.cli", str(SAMPLE), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "sample.binaural.mp4"
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.channels == 2
        assert sum(1 for _ in c.decode(video=0)) == 80
