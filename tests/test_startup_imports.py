"""What a run imports before its first engine call: OpenVINO without its model converter, no rich when nothing is
shown. Each check runs in a fresh interpreter, so what this test process imported earlier does not count."""

from __future__ import annotations

import subprocess
import sys

import pytest

_FORCING = ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_INTERACTIVE")  # what makes rich see a terminal on a pipe


def _python(code: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter, its stderr a pipe; return what it printed."""
    import os

    clean = {k: v for k, v in os.environ.items() if k not in _FORCING}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**clean, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_openvino_comes_without_its_converter_which_still_imports_when_asked_for():
    pytest.importorskip("openvino")
    out = _python(
        "import sys\n"
        "from ccstereo.runtime.openvino_import import core, installed\n"
        "first = core()\n"
        "assert core() is first and installed()\n"
        "assert 'openvino.tools.ovc' not in sys.modules, 'the converter was imported'\n"
        "assert first.get_available_devices()\n"
        "from openvino.tools.ovc import convert_model\n"  # held back only while OpenVINO imported
        "print(callable(convert_model))"
    )
    assert out == "True"


def test_a_converter_imported_before_is_left_alone():
    pytest.importorskip("openvino")
    out = _python(
        "import sys\n"
        "import openvino.tools.ovc\n"
        "from ccstereo.runtime.openvino_import import core\n"
        "core()\n"
        "import openvino\n"
        "print(sys.modules['openvino.tools.ovc'] is not None and hasattr(openvino, 'convert_model'))"
    )
    assert out == "True"


@pytest.mark.parametrize("quiet", [True, False])
def test_no_progress_display_imports_no_rich(quiet):
    """--quiet, or stderr not a terminal (as here: captured): no bar, and rich is never imported for it."""
    code = (
        "import sys\n"
        "from ccstereo.runtime.console import ConsoleEvents\n"
        f"with ConsoleEvents(quiet={quiet}, on_ray=False) as events:\n"
        "    events.planned([])\n"
        "print('rich.progress' in sys.modules)"
    )
    assert _python(code) == "False"


def test_a_forced_terminal_gets_rich_progress_bar():
    code = (
        "from ccstereo.runtime.console import ConsoleEvents\n"
        "events = ConsoleEvents(quiet=False, on_ray=False)\n"
        "print(type(events.bar).__module__)"
    )
    assert _python(code, {"FORCE_TERMINAL": "1"}).startswith("rich.")


def test_parsing_ccs_run_imports_no_pydantic():
    """typer 0.29 coerces every option through pydantic: ~70 ms more before the first engine call and ~120 ms more
    before a usage error here (pyproject keeps typer below it). Any way back to pydantic on the command line fails."""
    code = (
        "import sys\n"
        "from ccstereo.runtime.entry import ccs_run\n"
        "sys.argv = ['ccs-run', '/nonexistent/clip.mp4', '--quiet', '--hop-s', '0.1', '--format', 'mkv']\n"
        "try:\n"
        "    ccs_run()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, 'pydantic' in sys.modules)"
    )
    assert _python(code) == "1 False"  # exit 1: a file failed (it does not exist), after the whole parse


def test_the_tuning_cache_key_reads_library_versions_without_importlib_metadata():
    """The key of the tuner's cache holds the installed versions of onnxruntime, OpenVINO and numpy. Importing
    importlib.metadata for them cost ~15 ms of every start (~20 ms before the first engine call): they are read from
    the metadata folders' names (``tests/test_tuning.py`` checks them against importlib.metadata)."""
    code = (
        "import sys\n"
        "from ccstereo.runtime.backends.tuning_cache import machine\n"
        "key = machine()\n"
        "print(key['onnxruntime'] != 'absent', key['numpy'] != 'absent', 'importlib.metadata' in sys.modules)"
    )
    assert _python(code) == "True True False"
