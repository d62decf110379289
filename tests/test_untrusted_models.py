"""Model files from outside are untrusted: malformed ONNX, missing or inconsistent metadata and pickles that
would run code are refused with one line naming the file, and nothing in them is executed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccstereo.testing import hostile

RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
EXPORT = [sys.executable, "-m", "ccstereo.export.cli"]
BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "default" / "model.onnx"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return hostile.h264_aac_mp4(tmp_path_factory.mktemp("clip"), seconds=1.0)


def refused(result, name: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def with_props(tmp_path: Path, name: str, change) -> Path:
    import onnx

    model = onnx.load(str(BUNDLED))
    props = {p.key: p.value for p in model.metadata_props}
    change(props)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_bytes_that_are_not_onnx(clip, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07" + bytes(range(256)) * 40)
    refused(
        subprocess.run([*RUN, clip, "--model", junk], capture_output=True, text=True),
        "junk.onnx",
        "not a readable ONNX model",
    )
    half = tmp_path / "half.onnx"
    half.write_bytes(BUNDLED.read_bytes()[: BUNDLED.stat().st_size // 2])
    refused(subprocess.run([*RUN, clip, "--model", half], capture_output=True, text=True), "half.onnx")
    assert not list(clip.parent.glob("*.binaural.*"))


@pytest.mark.parametrize(
    "name, change, words",
    [
        ("no_config.onnx", lambda p: p.pop("ccstereo.config"), ("missing CCStereo metadata",)),
        ("bad_json.onnx", lambda p: p.update({"ccstereo.config": "{not json"}), ("config",)),
        ("bad_precision.onnx", lambda p: p.update({"ccstereo.precision": "fp4"}), ("precision",)),
        ("bad_snr.onnx", lambda p: p.update({"ccstereo.measured_snr_db": "[1, 2"}), ("measured_snr_db",)),
        ("bad_opset.onnx", lambda p: p.update({"ccstereo.opset": "seventeen"}), ("opset",)),
        (
            "wrong_window.onnx",
            lambda p: p.update(
                {"ccstereo.config": json.dumps({**json.loads(p["ccstereo.config"]), "window_samples": 12000})}
            ),
            (),
        ),
    ],
)
def test_missing_or_inconsistent_metadata(clip, tmp_path, name, change, words):
    model = with_props(tmp_path, name, change)
    refused(subprocess.run([*RUN, clip, "--model", model], capture_output=True, text=True), name, *words)


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A .pth in the official layout whose pickle would create ``marker`` when loaded with full unpickling."""
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "best_model.pth"
    torch.save({"state_dict": {"audio_net.conv.weight": torch.zeros(2)}, "extra": Payload()}, path)
    return path, marker


def test_pickle_payload_is_refused_by_every_entry_point(clip, tmp_path):
    evil, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(Exception, match="weights-only"):
        import ccstereo

        ccstereo.load_checkpoint(evil)
    run = subprocess.run([*RUN, clip, "--backend", "torch", "--model", evil], capture_output=True, text=True)
    refused(run, "best_model.pth", "weights-only")
    export = subprocess.run([*EXPORT, evil, "-o", tmp_path / "out"], capture_output=True, text=True)
    assert export.returncode == 1 and "best_model.pth" in export.stderr and "Traceback" not in export.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_external_data_outside_the_model_folder_is_not_read(clip, tmp_path):
    """An ONNX whose weights point at a file outside its folder (path traversal) is refused."""
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    model = onnx.load(str(BUNDLED))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    (tmp_path / "secret.bin").write_bytes(bytes(4 * _numel(tensor)))  # big enough: only its place is wrong
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(4 * _numel(tensor)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(folder / "model.onnx"))
    result = subprocess.run([*RUN, clip, "--model", folder / "model.onnx"], capture_output=True, text=True)
    refused(result, "model.onnx", "escapes")


def _numel(tensor) -> int:
    n = 1
    for d in tensor.dims:
        n *= d
    return n
