"""Make docs/ccs-view.png: ccs-run on the bundled sample (with a report), then its listening page with the scene's
own binaural rendering as reference, in Debian's headless chromium, paused at 5 s with the binaural track on.

    python docs/screenshot.py          (needs: pip install -e ".[dev]", apt-get install chromium)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccstereo.runtime.view.cli import make_server
from ccstereo.runtime.view.page import build_view, report_entry

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample.mp4"


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        out, report = Path(tmp) / "sample.binaural.mp4", Path(tmp) / "run.json"
        run = [sys.executable, "-m", "ccstereo.runtime.cli", str(SAMPLE), "-o", str(out), "--report", str(report)]
        subprocess.run([*run, "--quiet"], check=True)
        view = build_view(out, SAMPLE, REPO / "samples" / "sample.reference.wav", report_entry(report, out))
        server = make_server(view, Path(tmp))
        server.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url)
            while not page.evaluate("window.ccsView && document.getElementById('video').readyState >= 2"):
                time.sleep(0.05)
            page.evaluate("ccsView.seek(5.0)")
            while page.evaluate("document.getElementById('video').seeking"):
                time.sleep(0.05)
            page.wait_for_timeout(300)
            page.screenshot(path=str(REPO / "docs" / "ccs-view.png"))
            browser.close()
        server.shutdown()
        server.server_close()
    print(REPO / "docs" / "ccs-view.png")


if __name__ == "__main__":
    main()
