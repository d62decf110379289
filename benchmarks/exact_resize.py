"""The official loader's resize (Pillow bicubic to 480x240) done exactly, as convolutions in one graph: equal to
Pillow's to the bit, and is it faster? (Measured: no — the reason ``ccs-run`` keeps Pillow.)

    python benchmarks/exact_resize.py [--sizes 640x360 1920x1080] [--repeats 50]

Pillow resamples 8-bit pictures in two passes (horizontal, then vertical) with integer coefficients: each output
pixel is ``clip((2**21 + sum(pixel * k)) >> 22)``, where ``k`` are the bicubic weights (a = -0.5, support widened
by the scale when shrinking) normalised per output pixel and rounded to 22 fractional bits. ``coefficients``
reproduces them; ``reference_resize`` applies them with numpy integers (slow, exact: checked against Pillow). The
graph does each pass as a strided convolution per phase of the scale (interior pixels) plus a small matrix product
for the pixels whose support the border cuts, with each coefficient split into two float32 halves (``k >> 8`` and
``k & 255``) so every partial sum is an integer below 2**24, exact in float32; the halves are joined and rounded
with float operations that are exact in that range. Printed per size: equal to Pillow (random pictures), and ms
per frame for Pillow, the graph on onnxruntime and on OpenVINO (f32), one thread each. Needs onnx (``cpu`` extra).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction

import numpy as np

PRECISION_BITS = 22  # Pillow's for 8-bit pictures (32 - 8 - 2)
SPLIT = 8  # coefficient = hi * 2**SPLIT + lo, 0 <= lo < 2**SPLIT


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's integer bicubic coefficients for one axis: (first input [m], taps [m], weights [m, ksize])."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    starts, counts = np.zeros(out_size, np.int64), np.zeros(out_size, np.int64)
    k = np.zeros((out_size, ksize), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = 0.0
        for v in w:
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            k[xx, x] = int(v * (1 << PRECISION_BITS) + (-0.5 if v < 0 else 0.5))
        starts[xx], counts[xx] = xmin, xmax
    return starts, counts, k


def _reference_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    starts, counts, k = coefficients(x.shape[axis], out_size)
    x = np.moveaxis(x.astype(np.int64), axis, -1)
    out = np.empty(x.shape[:-1] + (out_size,), np.int64)
    for o in range(out_size):
        out[..., o] = (1 << (PRECISION_BITS - 1)) + x[..., starts[o] : starts[o] + counts[o]] @ k[o, : counts[o]]
    return np.moveaxis(np.clip(out >> PRECISION_BITS, 0, 255).astype(np.uint8), -1, axis)


def reference_resize(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """[h, w, 3] uint8 -> [height, width, 3], horizontal pass first, as Pillow."""
    out = picture if width == picture.shape[1] else _reference_axis(picture, 1, width)
    return out if height == picture.shape[0] else _reference_axis(out, 0, height)


class _Graph:
    def __init__(self) -> None:
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self.count += 1
        name = f"t{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [name], **attrs))
        return name

    def slice(self, x: str, lo: int, hi: int, axis: int) -> str:
        ints = [self.const([v], np.int64) for v in (lo, hi, axis)]
        return self.op("Slice", [x, *ints])

    def join(self, hi: str, lo: str) -> str:
        """clip(floor((hi * 2**SPLIT + lo + 2**21) / 2**22), 0, 255), exactly, from float32 integers < 2**24."""
        shift = PRECISION_BITS - SPLIT
        q = self.op("Floor", [self.op("Mul", [hi, self.const(1 / (1 << shift))])])
        r = self.op("Sub", [hi, self.op("Mul", [q, self.const(1 << shift)])])
        t = self.op("Add", [self.op("Mul", [r, self.const(1 << SPLIT)]), lo])
        t = self.op("Add", [t, self.const(1 << (PRECISION_BITS - 1))])
        v = self.op("Add", [q, self.op("Floor", [self.op("Mul", [t, self.const(1 / (1 << PRECISION_BITS))])])])
        return self.op("Clip", [v, self.const(0), self.const(255)])


def _split(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hi = np.floor_divide(k, 1 << SPLIT)
    return hi.astype(np.float32), (k - hi * (1 << SPLIT)).astype(np.float32)


def _axis_pass(g: _Graph, x: str, in_size: int, out_size: int) -> str:
    """[rows, in_size] -> [rows, out_size]; raises ValueError where the interior is not periodic (Pillow computes
    each pixel's weights in floating point, so a period can differ in the last bit)."""
    starts, counts, k = coefficients(in_size, out_size)
    ratio = Fraction(in_size, out_size)
    a, b = ratio.numerator, ratio.denominator
    inner = [o for o in range(out_size) if starts[o] > 0 and starts[o] + counts[o] < in_size]
    first, periods = inner[0], (inner[-1] + 1 - inner[0]) // b
    for o in range(first + b, first + b * periods):
        p = first + (o - first) % b
        shift = a * ((o - first) // b)
        if starts[o] != starts[p] + shift or not np.array_equal(k[o], k[p]):
            raise ValueError(f"{in_size} -> {out_size}: the weights are not periodic")
    s0 = min(starts[first : first + b])
    length = max(starts[o] - s0 + counts[o] for o in range(first, first + b))
    w = np.zeros((b, length), np.int64)
    for p, o in enumerate(range(first, first + b)):
        w[p, starts[o] - s0 : starts[o] - s0 + counts[o]] = k[o, : counts[o]]
    hi, lo = _split(w)
    xs = g.op("Unsqueeze", [g.slice(x, s0, s0 + a * (periods - 1) + length, 1), g.const([1], np.int64)])
    y = g.op("Conv", [xs, g.const(np.concatenate([hi, lo])[:, None, :])], strides=[a], kernel_shape=[length])
    v = g.op("Transpose", [g.join(g.slice(y, 0, b, 1), g.slice(y, b, 2 * b, 1))], perm=[0, 2, 1])
    parts = [g.op("Reshape", [v, g.const([0, periods * b], np.int64)])]
    for outs, at in ((range(0, first), 0), (range(first + b * periods, out_size), 1)):
        if len(outs):
            lo_in, hi_in = min(starts[o] for o in outs), max(starts[o] + counts[o] for o in outs)
            dense = np.zeros((hi_in - lo_in, len(outs)), np.int64)
            for j, o in enumerate(outs):
                dense[starts[o] - lo_in : starts[o] - lo_in + counts[o], j] = k[o, : counts[o]]
            dh, dl = _split(dense)
            xb = g.slice(x, lo_in, hi_in, 1)
            edge = g.join(g.op("MatMul", [xb, g.const(dh)]), g.op("MatMul", [xb, g.const(dl)]))
            parts.insert(0 if at == 0 else len(parts), edge)
    return g.op("Concat", parts, axis=1)


def resize_graph(height: int, width: int, out_w: int, out_h: int) -> bytes:
    """An ONNX graph: uint8 [height, width, 3] -> uint8 [out_h, out_w, 3], equal to Pillow's bicubic resize."""
    from onnx import TensorProto, helper

    g = _Graph()
    x = g.op("Transpose", [g.op("Cast", ["picture"], to=TensorProto.FLOAT)], perm=[2, 0, 1])
    x = _axis_pass(g, g.op("Reshape", [x, g.const([3 * height, width], np.int64)]), width, out_w)
    x = g.op("Transpose", [g.op("Reshape", [x, g.const([3, height, out_w], np.int64)])], perm=[0, 2, 1])
    x = _axis_pass(g, g.op("Reshape", [x, g.const([3 * out_w, height], np.int64)]), height, out_h)
    x = g.op("Transpose", [g.op("Reshape", [x, g.const([3, out_w, out_h], np.int64)])], perm=[2, 1, 0])
    g.nodes.append(helper.make_node("Cast", [x], ["resized"], to=TensorProto.UINT8))
    graph = helper.make_graph(
        g.nodes,
        "pillow_bicubic",
        [helper.make_tensor_value_info("picture", TensorProto.UINT8, [height, width, 3])],
        [helper.make_tensor_value_info("resized", TensorProto.UINT8, [out_h, out_w, 3])],
        g.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ms(call, repeats: int) -> float:
    call()
    t0 = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000 * (time.perf_counter() - t0) / repeats


def _row(size: str, repeats: int, rng: np.random.Generator) -> tuple[str, bool]:
    """One table row for a picture size, and whether every result equalled Pillow's."""
    import onnxruntime as ort
    import openvino as ov
    from PIL import Image

    width, height = (int(v) for v in size.split("x"))
    picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(picture).resize((480, 240)))
    reference = np.array_equal(pillow, reference_resize(picture, 480, 240))
    pillow_ms = _ms(lambda: np.asarray(Image.fromarray(picture).resize((480, 240))), repeats)
    try:
        graph = resize_graph(height, width, 480, 240)
    except ValueError as exc:
        return f"| {size} | {reference} / - / - | {pillow_ms:.2f} | {exc} | - |", reference
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )
    request = compiled.create_infer_request()
    same = [
        reference,
        np.array_equal(pillow, session.run(None, {"picture": picture})[0]),
        np.array_equal(pillow, request.infer({0: picture})[0]),
    ]
    graph_ms = [
        _ms(lambda: session.run(None, {"picture": picture}), repeats),
        _ms(lambda: request.infer({0: picture}), repeats),
    ]
    cells = " | ".join(f"{t:.2f}" for t in graph_ms)
    return f"| {size} | {' / '.join(map(str, same))} | {pillow_ms:.2f} | {cells} |", all(same)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x360", "640x272", "1920x1080", "3840x2160"])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    from ccstereo.testing.bench import cpu_name

    rng, ok = np.random.default_rng(0), True
    print(f"CPU: {cpu_name()}; to 480x240, one thread each, ms per frame\n")
    print("| picture | equal to Pillow (reference / onnxruntime / OpenVINO) | Pillow | onnxruntime | OpenVINO f32 |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        line, same = _row(size, args.repeats, rng)
        ok = ok and same
        print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
