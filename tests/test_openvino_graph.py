"""The inverse STFT's block form (``runtime/backends/openvino_graph.py``): the same sums as the exported strided
transposed convolution, in the form OpenVINO's CPU plugin runs faster.

Oracles not written by the rewrite: torch's own ``conv_transpose1d`` on the same kernels (any length, stride,
padding and zero taps) and ``torch.istft`` for the synthesis basis the model exports; the bundled model's original
graph run by the same OpenVINO. Real OpenVINO, every precision this CPU runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ccstereo.kernels.stft import ConvISTFT
from ccstereo.runtime.backends.openvino_graph import block_overlap_add

ov = pytest.importorskip("openvino")

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "default"


class _Synthesis(torch.nn.Module):
    def __init__(self, kernel: torch.Tensor, stride: int, padding: int) -> None:
        super().__init__()
        self.register_buffer("kernel", kernel)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv_transpose1d(x, self.kernel, stride=self.stride, padding=self.padding)


def _exported(module: torch.nn.Module, example: torch.Tensor, tmp_path: Path) -> Path:
    path = tmp_path / "graph.onnx"
    torch.onnx.export(
        module, (example,), str(path), input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "w"}}, dynamo=False
    )
    return path


def _run(path: Path, x: np.ndarray, rewrite: bool, hint: str = "f32") -> tuple[np.ndarray, int]:
    core = ov.Core()
    model = core.read_model(str(path))
    count = block_overlap_add(model) if rewrite else 0
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 1})
    return np.array(compiled.create_infer_request().infer({"x": x})[0]), count


@settings(max_examples=12, deadline=None)
@given(
    st.tuples(st.integers(2, 9), st.integers(2, 12), st.integers(1, 6)),  # channels, stride, frames
    st.tuples(st.integers(0, 30), st.integers(1, 40), st.integers(0, 30)),  # zero taps before, support, zeros after
    st.integers(0, 40),  # padding
    st.integers(0, 2**31 - 1),
)
def test_block_form_equals_the_strided_transposed_convolution(shape, kernel_taps, pad, seed):
    (channels, stride, frames), (lead, span, tail) = shape, kernel_taps
    taps = lead + span + tail
    if taps <= stride or (frames - 1) * stride + taps - 2 * pad < 1:
        return  # not a rewritten shape (no overlap), or no output at all
    rng = np.random.default_rng(seed)
    kernel = np.zeros((channels, 1, taps), np.float32)
    kernel[:, 0, lead : lead + span] = rng.standard_normal((channels, span))
    x = rng.standard_normal((3, channels, frames)).astype(np.float32)
    module = _Synthesis(torch.from_numpy(kernel), stride, pad)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = _exported(module, torch.from_numpy(x), Path(tmp))
        got, count = _run(path, x, rewrite=True)
    assert count == 1
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


def test_model_istft_in_block_form_matches_torch_istft_and_stays_float32_under_bf16(tmp_path):
    n = 10080
    istft = ConvISTFT(n, 64)
    rng = np.random.default_rng(3)
    spec = rng.standard_normal((4, 2, 257, 64)).astype(np.float32)
    with torch.no_grad():
        path = _exported(istft, torch.from_numpy(spec), tmp_path)
    complex_spec = torch.from_numpy(spec[:, 0].astype(np.float64) + 1j * spec[:, 1].astype(np.float64))
    window = torch.hann_window(400, dtype=torch.float64)
    reference = torch.istft(complex_spec, 512, 160, 400, window=window, center=True, length=n).numpy()
    for hint in ("f32", "bf16"):  # bf16: the hint a run gives on CPUs with it; the sum must not run in bf16
        got, count = _run(path, spec, rewrite=True, hint=hint)
        assert count == 1
        relative = np.linalg.norm(got - reference) / np.linalg.norm(reference)
        assert relative < 2e-6, (hint, relative)  # bf16 arithmetic would be ~3e-3


def test_bundled_model_rewritten_once_same_output(tmp_path):
    """The bundled graphs hold one inverse STFT (the U-Net's 2-D transposed convolutions are left as they are); the
    rewritten graph's output is the original's within float32 rounding."""
    z = np.load(BUNDLED / "verification.npz")
    feeds = {k: z[k][:4] for k in ("mono", "frame_index")}
    feeds["frames"] = z["frames"][: int(feeds["frame_index"].max()) + 1]
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    outputs, counts = [], []
    for rewrite in (False, True):
        model = core.read_model(str(BUNDLED / "model.onnx"))
        counts.append(block_overlap_add(model) if rewrite else 0)
        request = core.compile_model(model, "CPU", config).create_infer_request()
        outputs.append(np.array(request.infer(feeds)[0], np.float64))
    assert counts == [0, 1]
    old, new = outputs
    snr = 10 * np.log10(np.sum(old**2) / max(np.sum((new - old) ** 2), 1e-300))
    assert snr > 120, snr  # float32 rounding (~137 dB measured); a misplaced block would be near 0 dB


# -- ReLU ahead of its quantisation -----------------------------------------------------------------------------
def _qdq_relu_graph(scale: float, zero_point: int, two_consumers: bool = False) -> bytes:
    """x -> QuantizeLinear -> DequantizeLinear -> Relu -> y (and, with ``two_consumers``, the dequantised value as
    a second output)."""
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("s", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("z", TensorProto.UINT8, [], [zero_point]),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5, 7])]
    if two_consumers:
        outputs.append(helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 3, 5, 7]))
    graph = helper.make_graph(
        nodes, "qdq_relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 7])], outputs, inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _run_qdq(graph: bytes, x: np.ndarray, rewrite: bool) -> tuple[np.ndarray, int]:
    from ccstereo.runtime.backends.openvino_graph import relu_before_quantize

    core = ov.Core()
    model = core.read_model(graph, b"")
    moved = relu_before_quantize(model) if rewrite else 0
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return np.array(compiled.create_infer_request().infer({"x": x})[0]), moved


@settings(max_examples=25, deadline=None)
@given(st.floats(1e-3, 0.5), st.integers(0, 255), st.integers(0, 2**31 - 1))
def test_relu_moved_ahead_of_its_quantisation_computes_the_same(scale, zero_point, seed):
    """Relu(DQ(Q(x))) = DQ(Q(Relu(x))) wherever 0 is a grid point (any integer zero point): the same levels from
    OpenVINO (within an ulp of float32: it scales them in another order), and onnxruntime's own QDQ within one
    quantisation step (its rounding of exact halves may differ)."""
    x = (np.random.default_rng(seed).standard_normal((2, 3, 5, 7)) * 40 * scale).astype(np.float32)
    graph = _qdq_relu_graph(scale, zero_point)
    before, _ = _run_qdq(graph, x, rewrite=False)
    after, moved = _run_qdq(graph, x, rewrite=True)
    assert moved == 1
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6 * scale)  # float32 rounding; a level is `scale`
    import onnxruntime

    theirs = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(after - theirs).max() <= scale * 1.001


def test_relu_stays_where_moving_it_would_not_be_exact():
    """A dequantised value used elsewhere too (the ReLU cannot move for one consumer only) is left alone."""
    x = np.linspace(-3, 3, 210, dtype=np.float32).reshape(2, 3, 5, 7)
    _, moved = _run_qdq(_qdq_relu_graph(0.05, 100, two_consumers=True), x, rewrite=True)
    assert moved == 0


def test_an_exported_int8_graph_relus_moved_as_accurate(exported):
    """An exported int8 graph's nine Conv -> Q -> DQ -> ReLU (the ResNet trunk's; the fixture checkpoint's export,
    as no int8 graph is bundled since 2026-12-07) move, and the engine stays as close to the fp32 output (OpenVINO
    rounds differently in the two orders: measured 46.3 -> 50.1 dB under bf16 on the then bundled model, 52.9 ->
    51.4 dB on 60 s of real footage; a misplaced ReLU would cost tens of dB)."""
    from ccstereo.runtime.backends.openvino_graph import relu_before_quantize
    from ccstereo.runtime.cpu_features import native_bf16

    z = np.load(exported / "verification.npz")
    feeds = {k: z[k] for k in ("frames", "mono", "frame_index")}
    reference = z["fp32"].astype(np.float64)
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if native_bf16() else "f32", "INFERENCE_NUM_THREADS": 1}
    snr, counts = [], []
    for rewrite in (False, True):
        model = core.read_model(str(exported / "model.int8.onnx"))
        counts.append(relu_before_quantize(model) if rewrite else 0)
        out = np.array(core.compile_model(model, "CPU", config).create_infer_request().infer(feeds)[0], np.float64)
        snr.append(10 * np.log10(np.sum(reference**2) / np.sum((out - reference) ** 2)))
    assert counts == [0, 9]
    assert snr[1] >= snr[0] - 2.0, snr
