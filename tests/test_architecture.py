"""Structure that must hold: one error family, and imports that only go one way (runtime never pulls in torch,
the model or the exporter; the model and kernels never pull in the runtime or the exporter)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest

import ccstereo
from ccstereo.errors import CCStereoError

SIGNALS = {"Terminated"}  # BaseException on purpose: it must unwind like KeyboardInterrupt


def _modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [package] + [m.name for m in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]


def test_every_domain_error_is_a_ccstereo_error():
    found = []
    everything = {
        m for top in ("ccstereo", "ccstereo.runtime", "ccstereo.export", "ccstereo.kernels") for m in _modules(top)
    }
    for name in sorted(everything):
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException) and cls_name not in SIGNALS:
                found.append(cls)
                assert issubclass(cls, CCStereoError), f"{name}.{cls_name} is outside the CCStereoError family"
    assert len(found) >= 12  # the walk really saw the package's errors (runtime and export included)


def _imported_by(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "package, forbidden",
    [
        (
            "ccstereo.runtime",
            ("torch", "onnx", "tensorrt", "ray", "ccstereo.export", "ccstereo.model", "ccstereo.train"),
        ),
        ("ccstereo.model", ("ccstereo.runtime", "ccstereo.export", "ccstereo.train")),
        ("ccstereo.kernels", ("ccstereo.runtime", "ccstereo.export", "ccstereo.model", "ccstereo.train")),
    ],
)
def test_imports_go_one_way(package, forbidden):
    loaded = _imported_by(_modules(package))
    leaks = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not leaks, f"importing {package} loads {leaks}"


def test_the_run_path_starts_without_scipy():
    """scipy.signal takes ~0.85 s to import (0.94 of 0.99 s of the runtime's imports, measured): every ccs-run and
    every Ray worker would pay it at start, for one evaluation metric."""
    run_path = ["ccstereo.runtime.cli", "ccstereo.runtime.binauralizer", "ccstereo.runtime.ray_executor"]
    assert not {m for m in _imported_by(run_path) if m == "scipy" or m.startswith("scipy.")}


def test_package_root_is_light():
    assert {"torch", "onnx"}.isdisjoint(_imported_by(["ccstereo", "ccstereo.errors", "ccstereo.config"]))
    assert ccstereo.ModelConfig  # the light names resolve without torch


def _functions(folder: str):
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / folder
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(root.parent)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("folder", ["runtime", "export"])
def test_no_function_is_longer_than_50_lines(folder):
    found = list(_functions(folder))
    assert len(found) > 40  # the walk really read the folder
    long = [f"{where} ({n} lines)" for where, n in found if n > 50]
    assert not long, f"split these: {long}"


def test_the_run_pipeline_needs_no_type_ignores():
    # The Backend protocol carries ``info``, so the pipeline is typed through; optional GPU packages may still
    # need an ignore where they are imported (backends/cuda_device.py).
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "runtime"
    files = ["binauralizer.py", "stream.py", "sink.py", "media.py", "options.py", "backends/select.py"]
    ignores = [
        f"{f}:{i}"
        for f in files
        for i, line in enumerate((root / f).read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert not ignores, ignores


def _renames(path) -> list[str]:
    """Calls that move a file into place: os.replace / os.rename / shutil.move, ``x.rename(y)``, and
    ``x.replace(y)`` with one argument (str.replace takes two; dataclasses.replace takes keywords)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name = node.func.attr
        moved = (owner, name) in {("os", "replace"), ("os", "rename"), ("shutil", "move")}
        moved = moved or (name == "rename" and owner not in ("os",))
        moved = moved or (name == "replace" and len(node.args) == 1 and not node.keywords and owner != "dataclasses")
        if moved:
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_one_atomic_writer_moves_every_product_file_into_place():
    """Every file the project writes is published by ccstereo/atomic.py alone (one temporary-name scheme, one
    cleanup rule); test-data builders in ccstereo/testing are not product files."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    product = [p for folder in ("ccstereo", "runtime", "export", "kernels") for p in (root / folder).rglob("*.py")]
    product = [p for p in product if "testing" not in p.parts]
    assert len(product) > 50  # the walk really read the package
    outside = [hit for p in product if p.name != "atomic.py" for hit in _renames(p)]
    assert not outside, f"files moved into place outside ccstereo/atomic.py: {outside}"
    assert _renames(root / "ccstereo" / "atomic.py")  # the helper itself does (the check can see a rename)


def test_results_and_failures_are_built_by_the_jobs_layer_alone():
    """No module of the runtime builds a dict-shaped result or failure entry (``"status": ...``): a file's outcome is
    a ``jobs.FileResult`` and its dict is ``FileResult.to_dict``, the one report schema."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "runtime"
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            keys = node.keys if isinstance(node, ast.Dict) else []
            if any(isinstance(k, ast.Constant) and k.value == "status" for k in keys):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, found


def test_ray_is_named_in_the_ray_executor_alone():
    """Every Ray-specific call and patch is in runtime/ray_executor.py; the rest of the runtime never imports ray."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "runtime"
    found = []
    for path in root.rglob("*.py"):
        if path.name == "ray_executor.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "ray" or n.startswith("ray.") for n in names):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, found


COMMAND = ("cli", "cli_options", "console", "entry", "view")  # parse, show, exit (ccs-run, ccs-view)
JOBS = ("jobs", "ray_executor")  # files -> FileResult, here or on Ray


def _runtime_imports():
    """(module, a runtime module it imports) for every import in runtime/, those inside functions included."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "runtime"
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ccstereo.runtime"):
                target = node.module.removeprefix("ccstereo.runtime").lstrip(".")
                yield name, target if target else node.names[0].name


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return module.split(".")[0] in layer


def test_layers_are_imported_downwards_only():
    """command (cli, console, view) -> jobs (jobs, ray_executor) -> API and pipeline -> engines: nothing below the
    command layer imports it, and nothing below the jobs layer imports the jobs layer."""
    pairs = list(_runtime_imports())
    assert len(pairs) > 50  # the walk really read the runtime
    up = [f"{a} imports {b}" for a, b in pairs if _in(b, COMMAND) and not _in(a, COMMAND)]
    up += [f"{a} imports {b}" for a, b in pairs if _in(b, JOBS) and not _in(a, COMMAND + JOBS)]
    assert not up, up


ENGINE_CLASSES = {"OnnxRuntimeBackend", "OpenVINOBackend", "TensorRTBackend", "TorchBackend"}


def _engine_class_uses(path) -> list[str]:
    """Lines of ``path`` that import or name an engine class."""
    import ast

    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        named = []
        if isinstance(node, ast.ImportFrom):
            named = [a.name for a in node.names]
        elif isinstance(node, ast.Name):
            named = [node.id]
        elif isinstance(node, ast.Attribute):
            named = [node.attr]
        if ENGINE_CLASSES.intersection(named):
            hits.append(f"{path.name}:{node.lineno}")
    return hits


def test_one_place_builds_an_engine():
    """runtime/backends/choose.py is the one place an engine is constructed (``build``) and decided (``choose``);
    the rest of the runtime, the exporter and the benchmarks ask it. Allowed besides: each engine's own module, and
    the trainer's validation, which wraps the model it is training (nothing to choose)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    own = {f"{name}.py" for name in ("onnxruntime", "openvino", "tensorrt", "torch")}
    files = [p for folder in ("runtime", "export", "benchmarks", "ccstereo") for p in (root / folder).rglob("*.py")]
    allowed = {root / "runtime" / "backends" / "choose.py", root / "ccstereo" / "train" / "validate.py"}
    allowed |= {root / "runtime" / "backends" / name for name in own}
    assert len(files) > 80  # the walk really read the project
    outside = [hit for p in files if p not in allowed for hit in _engine_class_uses(p)]
    assert not outside, f"engine classes used outside backends/choose.py: {outside}"
    assert _engine_class_uses(root / "runtime" / "backends" / "choose.py")  # the check sees the builder's own imports


def test_engines_do_no_gating():
    """An engine runs what it is given: no engine module reads the accuracy policy or a measured figure."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "runtime" / "backends"
    for name in ("onnxruntime", "openvino", "tensorrt", "torch"):
        text = (folder / f"{name}.py").read_text()
        assert "precision_policy" not in text and "measured_snr_db" not in text, name
