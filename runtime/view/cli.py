"""ccs-view: watch a ccs-run output with headphones, flip between the original and the binaural sound at the same
instant, and see where the sound sits (left-right level difference, L / R spectrograms, the run report)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ccstereo.runtime.view.page import View, ViewError, build_view, content_type, relative_url, render, report_entry
from ccstereo.runtime.view.server import Resource, ViewServer

app = typer.Typer(add_completion=False, help=__doc__)


def write_wav(path: Path, rate_hz: int, audio) -> None:
    """Write 16-bit PCM through a temporary file beside ``path`` and a rename (never a half-written file)."""
    import numpy as np
    import soundfile as sf

    from ccstereo.atomic import publish
    from ccstereo.runtime.writers import temporary_path, write_error

    tmp = temporary_path(path)
    try:
        sf.write(str(tmp), np.clip(np.asarray(audio, np.float32).T, -1.0, 1.0), rate_hz, subtype="PCM_16")
        publish(tmp, path)
    except sf.LibsndfileError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, None, exc, tmp) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_server(view: View, folder: Path, port: int = 0) -> ViewServer:
    """Write the view's derived audio into ``folder`` and return a server for the page and exactly its files."""
    files = dict(view.files)
    for name, (rate, audio) in view.derived.items():
        write_wav(folder / name, rate, audio)
        files[name] = folder / name
    urls = {name: f"/media/{name}" for name in files}
    routes = {f"/media/{name}": Resource(content_type(name), path=path) for name, path in files.items()}
    routes["/"] = Resource("text/html; charset=utf-8", body=render(view, urls).encode("utf-8"))
    try:
        return ViewServer(routes, port)
    except OSError as exc:
        raise ViewError(f"127.0.0.1:{port}: cannot listen ({exc.strerror or exc})") from exc


def serve(view: View, port: int = 0, open_browser: bool = True) -> None:
    """Serve the page on 127.0.0.1 until Ctrl-C or SIGTERM; the audio made for it lives in a temporary folder,
    removed after. Both signals are taken even where the process started with SIGINT ignored (a background job of
    a shell without job control), so the folder is never left behind."""
    from ccstereo.runtime.interrupts import Terminated, signals_as_exceptions

    with tempfile.TemporaryDirectory(prefix="ccs-view-") as folder:
        server = make_server(view, Path(folder), port)
        thread = server.start()  # serving before the browser asks
        typer.echo(f"ccs-view: {server.url}  (Ctrl-C to stop)", err=True)
        try:
            with signals_as_exceptions():
                if open_browser:  # in a thread: a BROWSER command may not return until the browser closes
                    import threading
                    import webbrowser

                    opener = threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True)
                    opener.start()
                while thread.is_alive():
                    thread.join(0.5)
        except (KeyboardInterrupt, Terminated):
            pass
        finally:
            server.shutdown()
            server.server_close()


def write_html(view: View, page: Path, given: list[Path]) -> list[Path]:
    """Write the page as one self-contained HTML file (media by relative path); the audio it needs beyond the
    given files goes beside it as ``<page>.<name>.wav``. Return what was written."""
    from ccstereo.runtime.writers import atomic_write_text

    folder = page.parent
    written = [folder / f"{page.stem}.{name}" for name in view.derived]
    plan = html_plan(page, given)
    for target in written:
        _claim(plan, target, "a page's audio")
    urls = {name: relative_url(path, folder) for name, path in view.files.items()}
    for target, (name, (rate, audio)) in zip(written, view.derived.items(), strict=True):
        write_wav(target, rate, audio)
        urls[name] = relative_url(target, folder)
    atomic_write_text(page, render(view, urls))
    return [page, *written]


def html_plan(page: Path, given: list[Path]):
    """Return the WritePlan of ``--html PAGE`` (checked before any work): the page may not be a given file, a
    folder, or lie in a folder that is missing or not writable."""
    from ccstereo.runtime.write_plan import WritePlan

    plan = WritePlan([p for p in given if p.exists()])
    _claim(plan, page, "--html")
    return plan


def _claim(plan, path: Path, role: str) -> None:
    from ccstereo.runtime.writers import OutputError

    try:
        plan.claim(path, role)
    except OutputError as exc:
        raise ViewError(str(exc)) from exc


@app.command()
def main(
    output: Annotated[Path, typer.Argument(help="a ccs-run output (mp4/mkv/mov, or wav/flac with --input)")],
    original: Annotated[
        Path | None, typer.Option("--input", help="the original video (its sound is track A; its picture for wav)")
    ] = None,
    reference: Annotated[Path | None, typer.Option(help="ground-truth binaural: track R, its ILD, metrics")] = None,
    report: Annotated[Path | None, typer.Option(help="the ccs-run --report file to show this output's run")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1 (default: a free one)")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="print the address, do not open a browser")] = False,
    html: Annotated[Path | None, typer.Option(help="write the page to this file instead of serving it")] = None,
) -> None:
    """Open a listening page for OUTPUT on 127.0.0.1 (or write it with --html). Exit status 2 on bad input."""
    from ccstereo.errors import CCStereoError

    given = [p for p in (output, original, reference, report) if p is not None]
    try:
        if html is not None:
            html_plan(html, given)  # before any work: the page may not destroy a given file
        entry = report_entry(report, output) if report is not None else None
        view = build_view(output, original, reference, entry)
        if html is not None:
            for path in write_html(view, html, given):
                typer.echo(f"wrote {path}", err=True)
            return
        serve(view, port, open_browser=not no_browser)
    except CCStereoError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
