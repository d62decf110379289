"""Fresh environments built from pyproject.toml alone: the runtime install (no torch, no onnx, no tensorrt) runs
model.onnx and the CLIs' --help; the export extra alone runs ccs-export."""

import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check"]


@pytest.fixture(scope="session")
def runtime_env(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("runtime-venv")
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py = env_dir / "bin" / "python"
    result = subprocess.run([str(py), *PIP, "-e", str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]  # the dependencies pyproject.toml declares, nothing else
    return py


def test_no_heavy_packages_in_the_runtime_env(runtime_env):
    code = "import importlib.util as u; print([m for m in ('torch','onnx','tensorrt') if u.find_spec(m)])"
    out = subprocess.run([str(runtime_env), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_onnxruntime_backend_reproduces_pytorch_without_torch(runtime_env, exported, official, tmp_path):
    import torch

    import ccstereo

    model = ccstereo.load_checkpoint(official.checkpoint)
    crops, windows = official.crops_u8[:6], official.windows[:6]
    with torch.no_grad():
        ref = model.forward_windows(torch.from_numpy(crops), torch.from_numpy(windows)).numpy()
    np.save(tmp_path / "crops.npy", crops)
    np.save(tmp_path / "windows.npy", windows)
    script = f"""
import sys, numpy as np
from ccstereo.runtime.backends.onnxruntime import OnnxRuntimeBackend
backend = OnnxRuntimeBackend({str(exported / "model.onnx")!r})
crops = np.load({str(tmp_path / "crops.npy")!r}); windows = np.load({str(tmp_path / "windows.npy")!r})
out = backend.run(crops, windows, np.arange(len(windows)))
np.save({str(tmp_path / "out.npy")!r}, out)
assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'heavy import'
print(backend.name, backend.info.config.ngf)
"""
    result = subprocess.run([str(runtime_env), "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["onnxruntime-cpu-fp32", "16"]
    out = np.load(tmp_path / "out.npy")
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize(
    "module", ["ccstereo.export.cli", "ccstereo.cli_eval", "ccstereo.runtime.cli", "ccstereo.runtime.view.cli"]
)
def test_cli_help_without_torch(runtime_env, module):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([str(runtime_env), "-m", module, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-1000:]
    assert "Usage" in result.stdout


def test_runtime_package_import_is_light(runtime_env):
    code = (
        "import sys, ccstereo.runtime, ccstereo.runtime.backends.onnxruntime, ccstereo.runtime.backends.tensorrt, "
        "ccstereo.runtime.engine_cache; heavy = [m for m in ('torch','onnx','tensorrt') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([str(runtime_env), "-c", code], check=True)


def test_ccs_export_runs_after_installing_the_export_extra_alone(tmp_path_factory):
    """The README's recipe for the official checkpoint: pip install -e ".[export,cpu]", then ccs-export."""
    import torch

    import ccstereo

    env_dir = tmp_path_factory.mktemp("export-venv")
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py = str(env_dir / "bin" / "python")
    for step in (["torch==2.13.0"], ["-e", f"{REPO}[export,cpu]"]):
        result = subprocess.run([py, *PIP, *step], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    torch.manual_seed(0)
    small = ccstereo.CCStereo(ccstereo.ModelConfig(resnet_width=16, aspp_hidden=32)).eval()
    checkpoint = ccstereo.save_checkpoint(small, env_dir / "small.safetensors")
    out = env_dir / "exported"
    result = subprocess.run(
        [str(env_dir / "bin" / "ccs-export"), str(checkpoint), "-o", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()


def test_adaptive_visual_rate_without_onnx_runs_exact_and_says_why(runtime_env, tmp_path):
    sample, report = REPO / "samples" / "sample.mp4", tmp_path / "run.json"
    cli = [str(runtime_env), "-m", "ccstereo.runtime.cli", str(sample), "-o", str(tmp_path / "o.wav"), "-q"]
    result = subprocess.run([*cli, "--visual-rate", "adaptive", "--report", str(report)], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    import json

    entry = json.loads(report.read_text())["files"][0]
    assert entry["visual_rate"].startswith("exact (") and "onnx" in entry["visual_rate"]
    assert entry["crops_reused"] == 0


def test_ray_flag_without_ray_says_how_to_install_it(runtime_env, tmp_path):
    sample = REPO / "samples" / "sample.mp4"
    cli = [str(runtime_env), "-m", "ccstereo.runtime.cli", str(sample), "-o", str(tmp_path / "o.wav"), "--ray"]
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 2 and "pip install" in result.stderr and "[ray]" in result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_ccs_view_page_from_the_runtime_install(runtime_env, tmp_path):
    """The page, its metrics and its assets come with the plain install (package data included)."""
    sample, page = REPO / "samples" / "sample.mp4", tmp_path / "page.html"
    cli = [str(runtime_env), "-m", "ccstereo.runtime.view.cli", str(sample), "--html", str(page)]
    result = subprocess.run([*cli, "--reference", str(REPO / "samples" / "sample.reference.wav")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    text = page.read_text()
    assert "ccsView" in text and '"metrics":{"stft"' in text and (tmp_path / "page.original.wav").is_file()
