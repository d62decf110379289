"""The ``ccs-run`` command: its signal handling is in place before anything heavy is imported.

Until a run starts work (``cli._guarded`` installs the handlers that remove temporary files), nothing has been
written, so Ctrl-C, SIGTERM or a closed terminal end the command at once with one line and 128 + the signal —
not a KeyboardInterrupt traceback from the middle of an import (typer, numpy, PyAV: the first ~0.2 s).
"""

from __future__ import annotations

import os
import signal


def _before_work(signum: int, _frame) -> None:
    os.write(2, f"interrupted ({signal.Signals(signum).name}) before any work: nothing written\n".encode())
    os._exit(128 + signum)


def ccs_run() -> None:
    """Run ccs-run's typer app with early signals handled."""
    from ccstereo.runtime.options import quiet_libraries

    quiet_libraries()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:  # nohup / an ignored SIGINT stay as they were
            signal.signal(sig, _before_work)
    from ccstereo.runtime.cli import app

    app()
