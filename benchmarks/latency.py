"""Backend call latency per batch size, and achieved GFLOP/s against this machine's measured matmul throughput.

    python benchmarks/latency.py [--model DIR] [--batches 1 8 32 128] [--reps 5] [--json out.json]

Every window has its own frame (F = W, the 0.1 s-hop case). FLOPs per window are counted from the ONNX graph
(2 x multiply-accumulates of every Conv, ConvTranspose, MatMul and Gemm at W = F = 1) and printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ccstereo.testing.bench import calibration_videos, export_once, full_size_checkpoint


def count_flops(onnx_path: Path) -> float:
    """Return FLOPs of one window with its own frame (W = F = 1), from shapes inferred on the graph."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    for inp in model.graph.input:
        inp.type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]
    }
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    flops = 0.0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or any(d <= 0 for d in out):
            continue
        if node.op_type == "Conv":
            w = shapes[node.input[1]]
            flops += 2 * np.prod(out) * np.prod(w[1:])
        elif node.op_type == "ConvTranspose":
            w = shapes[node.input[1]]
            x = shapes[node.input[0]]
            flops += 2 * np.prod(x) * np.prod(w[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes[node.input[0]]
            flops += 2 * np.prod(out) * a[-1]
    return float(flops)


def _native_bf16() -> bool:
    """Return True when the CPU has BF16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in text.split() for flag in ("avx512_bf16", "amx_bf16"))


def matmul_gflops(dtype: str, n: int = 4096, reps: int = 3) -> dict[str, float]:
    """Return the best measured G(FL)OP/s of an n^3 matmul per library (fp32: torch, numpy, OpenVINO; bf16:
    torch, OpenVINO; int8: OpenVINO with fake-quantised u8 x i8 operands). The machine's figure is the best of
    them: one BLAS is not the CPU's limit (on this project's AMD Zen 5 host torch's fp32 matmul reached less
    than half of what the convolutions of onnxruntime did)."""
    out = {}
    if dtype == "fp32" or (dtype == "bf16" and _native_bf16()):  # emulated bf16 takes minutes and says nothing
        import torch

        dt = torch.float32 if dtype == "fp32" else torch.bfloat16
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        torch.matmul(a, b)
        out["torch"] = 2 * n**3 / min(_time(lambda: torch.matmul(a, b)) for _ in range(reps)) / 1e9
    if dtype == "fp32":
        x, y = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
        x @ y
        out["numpy"] = 2 * n**3 / min(_time(lambda: x @ y) for _ in range(reps)) / 1e9
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return out

    def fake_quantize(node, lo: float, hi: float, levels: int):
        lo_c, hi_c = ops.constant(np.array(lo, np.float32)), ops.constant(np.array(hi, np.float32))
        return ops.fake_quantize(node, lo_c, hi_c, lo_c, hi_c, levels)

    param = ops.parameter([n, n], ov.Type.f32)
    weight = ops.constant(np.random.uniform(-1, 1, (n, n)).astype(np.float32))
    if dtype == "int8":  # OpenVINO's low-precision transformations turn this into a u8 x i8 matmul
        product = ops.matmul(fake_quantize(param, 0.0, 1.0, 256), fake_quantize(weight, -1.0, 1.0, 255), False, False)
    else:
        product = ops.matmul(param, weight, False, False)
    hint = "bf16" if dtype == "bf16" else "f32"
    compiled = ov.Core().compile_model(ov.Model([product], [param]), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    feed = np.random.rand(n, n).astype(np.float32)
    request.infer([feed])
    out["openvino"] = 2 * n**3 / min(_time(lambda: request.infer([feed])) for _ in range(reps)) / 1e9
    return out


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_backend(backend, batches: list[int], reps: int, flops: float) -> list[dict]:
    rng = np.random.default_rng(0)
    cfg = backend.info.config
    rows = []
    for b in batches:
        frames = rng.integers(0, 255, (b, cfg.crop_height, cfg.crop_width, 3), dtype=np.uint8)
        mono = (rng.standard_normal((b, cfg.window_samples)) * 0.1).astype(np.float32)
        index = np.arange(b, dtype=np.int64)
        backend.run(frames, mono, index)  # warm-up
        times = np.array([_time(functools.partial(backend.run, frames, mono, index)) for _ in range(reps)])
        p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
        rows.append(
            {
                "backend": backend.name,
                "precision": backend.precision,
                "batch": b,
                "p50_ms": 1e3 * p50,
                "p95_ms": 1e3 * p95,
                "p50_ms_per_window": 1e3 * p50 / b,
                "gflops": flops * b / p50 / 1e9,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="exported folder (default: full-size random model)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ccs-latency-"))
    model_dir = args.model or export_once(full_size_checkpoint(work, None), work / "export", calibration_videos(work))
    flops = count_flops(model_dir / "model.onnx")
    by_lib = {p: matmul_gflops(p) for p in ("fp32", "bf16", "int8")}
    peak = {p: max(v.values()) if v else float("nan") for p, v in by_lib.items()}
    from ccstereo.runtime.backends.choose import build, cpu_candidates
    from ccstereo.runtime.cpu_features import int8_dot_product, native_bf16

    results = []
    for candidate in cpu_candidates(model_dir):  # every engine the runtime could choose here, as it builds them
        if (candidate.precision == "int8" and not int8_dot_product()) or (
            candidate.precision == "bf16" and not native_bf16()
        ):
            continue  # without the unit the runtime never picks it (OpenVINO would emulate it)
        try:
            results += bench_backend(build(model_dir, candidate), args.batches, args.reps, flops)
        except Exception as exc:  # noqa: BLE001 - one engine missing: the other rows still stand
            print(f"{candidate.label} skipped: {exc}", file=sys.stderr)
    libs = "; ".join(f"{p}: " + ", ".join(f"{k} {v:.0f}" for k, v in by_lib[p].items()) for p in by_lib)
    lines = [
        f"FLOPs per window (W = F = 1, counted from the graph): {flops / 1e9:.2f} GFLOP",
        f"measured 4096^3 matmul GFLOP/s per library: {libs}",
        f"machine figure (best library): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s, "
        f"int8 {peak['int8']:.0f} GOP/s",
        "",
        "| backend | batch | p50 ms/call | p95 ms/call | p50 ms/window | GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        # int8 rows: the graph's counted operations (int8 visual convolutions, the rest bf16) vs the int8 matmul
        ref = peak[r["precision"]]
        r["pct_of_matmul"] = 100 * r["gflops"] / ref
        lines.append(
            f"| {r['backend']} | {r['batch']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p50_ms_per_window']:.2f} | {r['gflops']:.0f} | {r['pct_of_matmul']:.0f}% |"
        )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps({"flops_per_window": flops, "matmul_gflops": by_lib, "peak": peak, "rows": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
