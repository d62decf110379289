"""Average the weights of several checkpoints of one model ("model soup"): ``python -m ccstereo.train.average OUT
IN IN [IN ...]``.

The checkpoints must share one model configuration (the same architecture and sizes) and should start from one
initialisation, as the runs of one recipe do (the same ``--init``, a frozen trunk): then the plain mean of every
floating-point tensor is a model in its own right, usually between or above its parts on scenes none of them was
trained on. Integer tensors (BatchNorm's step counters) are taken from the first input. The output is written
atomically and is never one of the inputs.

Inputs may be fp32 ``model.onnx`` files that ``ccs-export`` wrote (their weights recovered by
``ccstereo.model.from_onnx``, every BatchNorm folded into its convolution), all of them or none: a graph's folded
weights and a checkpoint's unfolded ones are not the same parameters, so their mean would be no model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ccstereo.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _from_graph(path: Path):
    from ccstereo.model.from_onnx import model_from_onnx

    return model_from_onnx(path)


def average_checkpoints(out: Path, inputs: list[Path]) -> Path:
    """Write the mean of the checkpoints ``inputs`` (two or more, one configuration) to ``out``."""
    if len(inputs) < 2:
        raise CheckpointError("averaging needs two or more checkpoints")
    if any(out.resolve() == p.resolve() for p in inputs):
        raise CheckpointError(f"{out}: the output would overwrite one of its own inputs")
    graphs = {p.suffix == ".onnx" for p in inputs}
    if len(graphs) > 1:
        raise CheckpointError("average exported graphs (.onnx) with graphs and checkpoints with checkpoints, not both")
    load = _from_graph if graphs == {True} else load_checkpoint
    first = load(inputs[0])
    total = {k: v.detach().clone() for k, v in first.state_dict().items()}
    for path in inputs[1:]:
        model = load(path)
        if model.config != first.config:
            raise CheckpointError(f"{path}: its model configuration differs from {inputs[0]}'s; cannot average")
        for key, value in model.state_dict().items():
            if total[key].is_floating_point():
                total[key] += value
    first.load_state_dict({k: (v / len(inputs) if v.is_floating_point() else v) for k, v in total.items()})
    names = ",".join(p.name for p in inputs)
    return save_checkpoint(first, out, extra={"average_of": names})


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m ccstereo.train.average OUT IN IN [IN ...]", file=sys.stderr)
        return 2
    try:
        out = average_checkpoints(Path(argv[0]), [Path(a) for a in argv[1:]])
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} (mean of {len(argv) - 1} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
