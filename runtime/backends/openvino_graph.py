"""Graph rewrites OpenVINO gets before it compiles an exported model: the same computation, reordered where that is
exact, in a form its CPU plugin runs faster. Applied to the model as read (no file changes), so graphs exported by any
version gain. Two: the inverse STFT in blocks (below) and an int8 graph's ReLUs ahead of their quantisation (further
down).

The inverse STFT is exported as one strided transposed convolution: [W, 2F, T] spectra (2F = 514 real and imaginary
bins, T = 64 frames) against a [2F, 1, n_fft] synthesis basis, stride hop (160), i.e. every frame's windowed inverse
DFT overlap-added at its place. OpenVINO's CPU plugin runs that shape through a generic f32 GEMM path: ~17 ms per
16 windows on one core, 12 % of the bundled default's time per window (Zen 4, int8 graph). Cut into hop-sized
blocks, the same sum is a transposed convolution of stride 1 whose kernel holds k = ceil(support / hop) blocks of
the basis ([2F, hop, k]: 514 x 160 x 3): out_block[b] = sum_j frames[b - j] . basis_block[j]. The products are the
same; only the order of the additions changes (float32 rounding, ~1e-7 relative). It runs as OpenVINO's direct
convolution kernel in 4.8-6.5 ms, and stays float32 under a bf16 precision hint as the original did (a transposed
convolution at the graph's tail is kept in the output precision by OpenVINO's CPU plugin; the same sum as a MatMul
would be converted to bf16, ~51 dB). Zero taps at either end of the basis (the 400-sample window centred in the
512-sample frame) are dropped, so no product is computed that the original did not need.
"""

from __future__ import annotations

import numpy as np


def block_overlap_add(model) -> int:
    """Rewrite every strided 1-D synthesis transposed convolution of ``model`` (an ``openvino.Model``) in place
    into its block form; return how many were rewritten."""
    rewritten = 0
    for node in model.get_ordered_ops():
        basis = _synthesis_basis(node)
        if basis is not None:
            block_form = _block_form(node, basis)
            for consumer in node.output(0).get_target_inputs():
                consumer.replace_source_output(block_form)
            rewritten += 1
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten


def _synthesis_basis(node) -> np.ndarray | None:
    """Return the [C, 1, K] basis of a rewritable node: a 1-D ConvolutionBackpropData with a constant one-output
    kernel longer than its stride, static frame count and output length, no output padding or dilation."""
    if node.get_type_name() != "ConvolutionBackpropData" or node.get_input_size() != 2:
        return None
    attrs = node.get_attributes()
    weights = node.input_value(1).get_node()
    data_shape, out_shape = node.get_input_partial_shape(0), node.get_output_partial_shape(0)
    if weights.get_type_name() != "Constant" or len(attrs["strides"]) != 1 or data_shape.rank.get_length() != 3:
        return None
    if attrs["dilations"] != [1] or attrs["output_padding"] != [0] or attrs.get("auto_pad") != "explicit":
        return None
    if not (data_shape[2].is_static and out_shape[2].is_static):
        return None
    basis = np.asarray(weights.get_data())
    if basis.ndim != 3 or basis.shape[1] != 1 or basis.shape[2] <= attrs["strides"][0] or basis.dtype != np.float32:
        return None
    return basis if np.any(basis) else None


def _block_form(node, basis: np.ndarray):
    """Return the output of the block form of ``node`` ([W, 1, length], the original's shape)."""
    import openvino.opset13 as ops

    attrs = node.get_attributes()
    hop, pad = attrs["strides"][0], attrs["pads_begin"][0]
    frames = node.get_input_partial_shape(0)[2].get_length()
    length = node.get_output_partial_shape(0)[2].get_length()
    support = np.flatnonzero(np.any(basis[:, 0, :] != 0, axis=0))
    first, span = int(support[0]), int(support[-1]) - int(support[0]) + 1
    k = -(-span // hop)
    taps = np.zeros((basis.shape[0], k * hop), np.float32)
    taps[:, :span] = basis[:, 0, first : first + span]
    kernel = np.ascontiguousarray(taps.reshape(-1, k, hop).transpose(0, 2, 1))  # [C, hop, k]: [c, i, j] = tap j*hop+i
    blocks = ops.convolution_backprop_data(
        node.input_value(0), ops.constant(kernel), strides=[1], pads_begin=[0], pads_end=[0], dilations=[1]
    )
    flat = ops.reshape(ops.transpose(blocks, np.array([0, 2, 1])), np.array([0, 1, -1]), special_zero=True)
    # Block b, sample i sits at b*hop + i of the flat signal, which is sample b*hop + i + first - pad of the original.
    offset, total = pad - first, (frames + k - 1) * hop
    before, after = max(0, -offset), max(0, offset + length - total)
    if before or after:  # a part of the original output no frame reaches: zeros, as the original computes there
        flat = ops.pad(flat, np.array([0, 0, before]), np.array([0, 0, after]), "constant")
        offset += before
    out = ops.slice(flat, np.array([offset]), np.array([offset + length]), np.array([1]), np.array([2]))
    out.set_friendly_name(node.get_friendly_name() + "/blocks")
    return out.output(0)


# -- Relu ahead of its quantisation ------------------------------------------------------------------------------
# The int8 graph quantises a convolution's output and dequantises it before the ReLU that follows (onnxruntime's
# QDQ quantiser quantises the Conv, not the ReLU): Conv -> Q -> DQ -> Relu. OpenVINO then runs the dequantisation
# as a reference (non-JIT) conversion plus a subtraction on the whole activation and the ReLU in floating point (bf16
# on CPUs with it): 6 ms of the bundled default's 125 ms per 16 windows (Zen 4), at the ResNet stem's 112 x 224.
# Because the quantisation grid holds 0 exactly (an integer zero point) and both Q and DQ are non-decreasing,
# Relu(DQ(Q(x))) = DQ(Q(Relu(x))) for every x; written that way OpenVINO fuses the ReLU into the int8 convolution
# and requantises in integers. The graph's meaning is the same; OpenVINO's rounding is not (the original order
# rounded the dequantised values to bf16 before requantising them): the bundled default's output moves by 50-55 dB,
# its distance to fp32 from 46.3 to 50.1 dB on its verification windows and from 52.9 to 51.4 dB on 60 s of real
# footage (Zen 4, bf16 hint), and the int8 engine takes 0.96x the time.
_DEQUANTIZE_OPS = ("Multiply", "Subtract", "Convert")


def relu_before_quantize(model) -> int:
    """Move every ReLU that follows a dequantised FakeQuantize ahead of the FakeQuantize, where it is exact (see
    above); return how many were moved."""
    import openvino.opset13 as ops

    moved = 0
    for relu in model.get_ordered_ops():
        fake_quantize = _quantized_input(relu) if relu.get_type_name() == "Relu" else None
        if fake_quantize is None:
            continue
        fake_quantize.input(0).replace_source_output(ops.relu(fake_quantize.input_value(0)).output(0))
        for consumer in relu.output(0).get_target_inputs():
            consumer.replace_source_output(relu.input_value(0))
        moved += 1
    if moved:
        model.validate_nodes_and_infer_types()
    return moved


def _constant(output) -> np.ndarray | None:
    """Return the value of a Constant, or of a Convert of a Constant (how OpenVINO reads a zero point), else None."""
    node = output.get_node()
    if node.get_type_name() == "Convert" and node.input_value(0).get_node().get_type_name() == "Constant":
        return np.asarray(node.input_value(0).get_node().get_data()).astype(np.float64)
    return np.asarray(node.get_data()).astype(np.float64) if node.get_type_name() == "Constant" else None


def _quantized_input(relu):
    """Return the FakeQuantize whose dequantised output ``relu`` takes, when moving ``relu`` ahead of it is exact:
    the chain between them only converts, subtracts constants and multiplies by positive constants, each node of it
    feeds only the next, and input 0 lands exactly on a grid point that the chain maps to 0."""
    chain, node = [], relu.input_value(0).get_node()
    while node.get_type_name() in _DEQUANTIZE_OPS and len(chain) < 4:
        chain.append(node)
        node = node.input_value(0).get_node()
    if node.get_type_name() != "FakeQuantize" or not chain:
        return None
    if any(len(n.output(0).get_target_inputs()) != 1 for n in [node, *chain]):
        return None
    low, high, out_low, out_high = (_constant(node.input_value(i)) for i in range(1, 5))
    if low is None or high is None or out_low is None or out_high is None or np.any(high <= low):
        return None
    steps = node.get_attributes()["levels"] - 1
    zero = -low * steps / (high - low)  # the grid index of an input of 0
    if np.any(zero < 0) or np.any(zero > steps) or np.any(np.abs(zero - np.round(zero)) > 1e-3):
        return None
    value = out_low + np.round(zero) * (out_high - out_low) / steps  # what the FakeQuantize outputs for 0
    for step in reversed(chain):  # Convert keeps the value (an integer on the grid, exact in every type)
        kind = step.get_type_name()
        operand = None if kind == "Convert" else _constant(step.input_value(1))
        if kind == "Subtract" and operand is not None:
            value = value - operand
        elif kind == "Multiply" and operand is not None and np.all(operand > 0):
            value = value * operand
        elif kind != "Convert":
            return None
    return node if np.all(value == 0) else None
