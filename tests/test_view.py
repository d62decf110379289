"""ccs-view: the server (Range, exact paths only, loopback only), the page's data from ffmpeg-made media, the
--html file, ccs-run --view, and the page itself in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ccstereo.runtime.view import analysis
from ccstereo.runtime.view.cli import make_server, write_html
from ccstereo.runtime.view.page import build_view
from ccstereo.runtime.view.server import Resource, ViewServer

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CCSTEREO_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEW = [sys.executable, "-m", "ccstereo.runtime.view.cli"]
LEFT_THEN_RIGHT = "if(lt(t\\,2)\\,0.5*sin(2*PI*440*t)\\,0)|if(lt(t\\,2)\\,0\\,0.5*sin(2*PI*660*t))"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 4 s 'output' (H.264 + AAC) whose sound is hard left for 2 s then hard right, its mono 'input', and a
    reference wav with the same left-then-right sound; all made by the ffmpeg CLI."""
    folder = tmp_path_factory.mktemp("view")
    picture = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    video = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", "4"]
    ffmpeg(*picture, "-f", "lavfi", "-i", f"aevalsrc={LEFT_THEN_RIGHT}:s=48000:d=4", *video, "-c:a", "aac",
           "-b:a", "192k", "-shortest", str(folder / "out.binaural.mp4"))  # fmt: skip
    ffmpeg(*picture, "-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*440*t):s=48000:d=4", *video, "-c:a", "aac",
           "-shortest", str(folder / "in.mp4"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc={LEFT_THEN_RIGHT}:s=16000:d=4", str(folder / "reference.wav"))
    return {"output": folder / "out.binaural.mp4", "input": folder / "in.mp4", "reference": folder / "reference.wav"}


# ---- the server -------------------------------------------------------------------------------------------------


@pytest.fixture()
def served(tmp_path):
    """A server given one file, with a second file beside it that it was not given."""
    payload = np.random.default_rng(7).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    (tmp_path / "media.bin").write_bytes(payload)
    (tmp_path / "secret.txt").write_text("not yours")
    routes = {
        "/": Resource("text/html", body=b"<p>page</p>"),
        "/media/a.mp4": Resource("video/mp4", tmp_path / "media.bin"),
    }
    server = ViewServer(routes)
    server.start()
    yield server, payload
    server.shutdown()
    server.server_close()


def _get(server: ViewServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    headers = headers or {}
    # the path goes out exactly as written; a Host given here replaces http.client's own
    conn.putrequest("GET", path, skip_host="Host" in headers, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=99000-", 99000, 99999),
        ("bytes=-50", 99950, 99999),
        ("bytes=5-5", 5, 5),
        ("bytes=99990-200000", 99990, 99999),
    ],  # fmt: skip
)
def test_range_requests_answer_206_with_exactly_those_bytes(served, header, first, last):
    server, payload = served
    status, headers, body = _get(server, "/media/a.mp4", {"Range": header})
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(payload)}"
    assert body == payload[first : last + 1]
    assert int(headers["content-length"]) == last - first + 1


def test_whole_file_without_range_and_416_past_the_end(served):
    server, payload = served
    status, headers, body = _get(server, "/media/a.mp4")
    assert (status, body, headers["accept-ranges"]) == (200, payload, "bytes")
    status, headers, _ = _get(server, "/media/a.mp4", {"Range": f"bytes={len(payload)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(payload)}"


@pytest.mark.parametrize(
    "path",
    [
        "/secret.txt",
        "/media/secret.txt",
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/media/a.mp4/../../secret.txt",
        "//etc/passwd",
        "/etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media/a.mp4%00.txt",
        "/media/A.MP4",
        "/media/a.mp4/",
        "/media",
        "/index.html",
        "http://127.0.0.1/etc/passwd",
    ],  # fmt: skip
)
def test_anything_not_given_is_404(served, path):
    server, _ = served
    status, _, body = _get(server, path)
    assert status == 404 and body == b""


def test_only_requests_addressed_to_the_loopback_server_are_answered(served):
    server, payload = served
    assert _get(server, "/media/a.mp4", {"Host": f"localhost:{server.server_port}"})[0] == 200
    assert _get(server, "/media/a.mp4", {"Host": f"attacker.example:{server.server_port}"})[0] == 404


def test_listens_on_127_0_0_1_only(served):
    server, _ = served
    assert server.server_address[0] == "127.0.0.1"
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    port_hex = f"{server.server_port:04X}"
    fields = [line.split() for line in listening]
    local = {f[1] for f in fields if f[1].endswith(":" + port_hex) and f[3] == "0A"}  # 0A: LISTEN
    assert local == {f"0100007F:{port_hex}"}  # 127.0.0.1, not 0.0.0.0
    with pytest.raises(ConnectionRefusedError):  # another loopback address of this machine: nobody listens
        socket.create_connection(("127.0.0.2", server.server_port), timeout=5).close()


# ---- what the page shows ----------------------------------------------------------------------------------------


def test_ild_is_left_minus_right_in_db_with_silence_left_out():
    rate, t = 16000, np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 300 * t)
    left_6db = np.stack([tone, tone * 10 ** (-6 / 20)])
    assert analysis.ild_curve(left_6db, rate)[3] == pytest.approx(6.0, abs=0.01)
    one_ear = np.stack([np.zeros_like(tone), tone])
    assert analysis.ild_curve(one_ear, rate)[5] == -analysis.ILD_LIMIT_DB
    half_silent = np.concatenate([np.stack([tone, tone]), np.zeros((2, 16000))], axis=1)
    curve = analysis.ild_curve(half_silent, rate)
    assert len(curve) == 20 and curve[0] == pytest.approx(0.0, abs=1e-6) and curve[10:] == [None] * 10


def test_gains_match_every_track_to_the_quietest():
    gains = analysis.matched_gains({"a": 0.1, "b": 0.4, "c": 0.0})
    assert gains == {"a": 1.0, "b": pytest.approx(0.25), "c": 1.0}


def test_page_data_from_ffmpeg_media(clips):
    view = build_view(clips["output"], clips["input"], clips["reference"], None)
    data = view.data
    ild = data["ild"]["output"]
    assert all(v > 20 for v in ild[2:18]) and all(v < -20 for v in ild[22:38])
    assert [t["id"] for t in data["tracks"]] == ["original", "binaural", "reference"]
    # the original is the input's own mono tone; the output carries each half on one ear: same RMS per channel
    # pair means the two tracks differ in loudness, and the louder is turned down to the quieter
    levels = {t["id"]: t["level"] for t in data["tracks"]}
    quietest = min(levels.values())
    for track in data["tracks"]:
        assert track["gain"] * track["level"] == pytest.approx(quietest, rel=1e-4)
    # the reference is the output's sound before AAC coding: far above 0 dB (a swap of ears or a shift gives <= 0)
    assert data["metrics"]["snr"] > 10
    assert set(view.files) == {"video.mp4", "binaural.mp4", "reference.wav"}
    assert set(view.derived) == {"original.wav"}


def test_html_page_is_one_file_with_media_by_relative_path(clips, tmp_path):
    page = tmp_path / "share" / "report.html"
    page.parent.mkdir()
    view = build_view(clips["output"], clips["input"], None, None)
    written = write_html(view, page, [clips["output"], clips["input"]])
    assert written == [page, page.parent / "report.original.wav"]
    text = page.read_text()
    raw = text.split('<script type="application/json" id="ccs-data">')[1].split("</script>")[0]
    data = json.loads(raw)
    for name, url in data["urls"].items():
        assert not url.startswith(("/", "http")), url
        assert (page.parent / url).resolve().is_file(), name
    assert "<script src" not in text and '<link rel="stylesheet"' not in text and "https://" not in text
    mix, rate = sf.read(page.parent / "report.original.wav")
    assert rate == 48000 and mix.ndim == 1


def test_ccs_view_refuses_bad_input_in_one_line(clips, tmp_path):
    missing = subprocess.run([*VIEW, str(tmp_path / "nope.mp4"), "--no-browser"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "nope.mp4" in missing.stderr
    wav = tmp_path / "out.wav"
    ffmpeg("-i", str(clips["output"]), "-vn", str(wav))
    no_video = subprocess.run([*VIEW, str(wav), "--html", str(tmp_path / "p.html")], capture_output=True, text=True)
    assert no_video.returncode == 2 and "--input" in no_video.stderr
    own = subprocess.run(
        [*VIEW, str(wav), "--input", str(clips["input"]), "--html", str(wav)], capture_output=True, text=True
    )
    assert own.returncode == 2 and "destroy" in own.stderr and sf.info(str(wav)).frames > 0


def test_ccs_run_view_serves_the_page_of_the_last_output(clips, tmp_path):
    """ccs-run --view: the page is served, the 'browser' (BROWSER, as Python's webbrowser reads it) gets its URL,
    and Ctrl-C ends it with the run's status."""
    fetched = tmp_path / "fetched.html"
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import sys, urllib.request\n"
        f"open({str(fetched)!r}, 'wb').write(urllib.request.urlopen(sys.argv[1], timeout=30).read())\n"
    )
    env = dict(os.environ, BROWSER=f"{sys.executable} {browser} %s", PYTHONFAULTHANDLER="1")
    run = subprocess.Popen(
        [sys.executable, "-m", "ccstereo.runtime.cli", str(clips["input"]), "-o", str(tmp_path / "o.mp4"), "--view",
         "--quiet"], env=env, stderr=subprocess.PIPE, text=True,
        # started with SIGINT ignored, as a background job of a shell without job control is: Ctrl-C still ends it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not fetched.exists() or not fetched.stat().st_size:
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.stderr else ""
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        try:
            _, stderr = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say where it is stuck: faulthandler prints every thread on SIGABRT
            run.send_signal(signal.SIGABRT)
            pytest.fail(f"no exit 60 s after SIGINT: {run.communicate(timeout=30)[1][-6000:]}")
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "ccs-view: http://127.0.0.1:" in stderr
    page = fetched.read_text()
    data = json.loads(page.split('id="ccs-data">')[1].split("</script>")[0])
    assert (
        data["title"] == "o.mp4"
        and data["report"]["status"] == "ok"
        and data["report"]["engine"]
        and data["report"]["precision"]
    )


# ---- the page in a real browser ---------------------------------------------------------------------------------


def _chromium_or_skip():
    """Debian's chromium and Playwright; in CI (CI=true) their absence is a failure, elsewhere a skip."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        reason = "no chromium (apt-get install chromium, or bash .ci/system-deps)"
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


def _until(page, expression: str, timeout_s: float = 15.0):
    """Poll ``expression`` in the page (the page's CSP forbids eval, so no wait_for_function)."""
    deadline = time.monotonic() + timeout_s
    while not (value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.02)
    return value


@pytest.fixture()
def browser_page(clips, tmp_path):
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    view = build_view(clips["output"], clips["input"], clips["reference"], None)
    server = make_server(view, tmp_path)
    server.start()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 940})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto(server.url)
        yield page, errors
        browser.close()
    server.shutdown()
    server.server_close()


def test_page_in_headless_chromium(browser_page):
    page, errors = browser_page
    _until(page, "window.ccsView && document.getElementById('video').readyState >= 2")
    assert page.evaluate("document.getElementById('video').videoWidth") == 320
    # the ILD the page plots, read from the page: left ear louder first, right ear louder after 2 s
    ild = page.evaluate("ccsView.data.ild.output")
    assert all(v is not None and v > 20 for v in ild[2:18]) and all(v is not None and v < -20 for v in ild[22:38])
    assert page.evaluate("ccsView.data.ild.reference.length") >= 40

    page.keyboard.press("Space")  # play
    _until(page, "ccsView.clock().currentTime >= 1.5")
    before = page.evaluate("[ccsView.clock().currentTime, performance.now() / 1000]")
    page.keyboard.press("a")
    after = page.evaluate("[ccsView.clock().currentTime, performance.now() / 1000, ccsView.active()]")
    assert after[2] == "original"
    jump = (after[0] - before[0]) - (after[1] - before[1])  # playhead movement beyond the time that passed
    assert abs(jump) <= 0.05, f"A/B switch moved the playhead by {jump * 1000:.0f} ms"
    assert page.evaluate("ccsView.audios.binaural.muted && !ccsView.audios.original.muted")
    # the heard track is brought onto the picture's clock (the page resyncs past 45 ms; a loaded CI host needs
    # a moment for the audio element's seek): within 50 ms inside 2 s
    in_sync = "Math.abs(ccsView.audios.original.currentTime - ccsView.clock().currentTime) <= 0.05"
    _until(page, in_sync, timeout_s=2.0)
    page.keyboard.press("r")
    assert page.evaluate("ccsView.active()") == "reference"
    page.keyboard.press("b")
    assert page.evaluate("ccsView.active()") == "binaural"

    page.keyboard.press("Space")  # pause, then click the ILD curve where it draws 3 s
    plot = page.locator("#ild")
    box = plot.bounding_box()
    x0, x1 = float(plot.get_attribute("data-x0")), float(plot.get_attribute("data-x1"))
    duration = page.evaluate("ccsView.data.duration_s")
    page.mouse.click(box["x"] + x0 + 3.0 / duration * (x1 - x0), box["y"] + box["height"] / 2)
    _until(page, "!document.getElementById('video').seeking")
    assert page.evaluate("ccsView.clock().currentTime") == pytest.approx(3.0, abs=0.1)
    assert page.evaluate("document.getElementById('metrics-table').rows.length") >= 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ccs-view.png"))
    assert not errors, errors


def test_page_data_cannot_close_its_script_element(clips, tmp_path):
    """A file name is data, never markup: '</script>' in a title stays inside the JSON."""
    from ccstereo.runtime.view.page import render

    view = build_view(clips["output"], clips["input"], None, None)
    view.data["title"] = "a</script><script>alert(1)</script>\u2028.mp4"
    html = render(view, {name: name for name in [*view.files, *view.derived]})
    block = html.split('<script type="application/json" id="ccs-data">')[1].split("</script>")[0]
    assert json.loads(block)["title"] == view.data["title"]
    assert "<title>a&lt;/script&gt;" in html


def test_html_page_plays_from_disk_in_headless_chromium(clips, tmp_path):
    """--html: opened as a file (no server), the page finds its media by relative path and plays them."""
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "report.html"
    write_html(build_view(clips["output"], clips["input"], None, None), page_file, [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        ready = "document.getElementById('video').readyState >= 2 && ccsView.audios.original.readyState >= 2"
        _until(page, ready)
        page.keyboard.press("Space")
        _until(page, "ccsView.clock().currentTime >= 0.5")
        heard = page.evaluate("ccsView.audios.binaural.currentTime")
        browser.close()
    assert heard > 0.3 and not errors, errors


def test_a_video_the_browser_cannot_play_still_gives_sound_switch_and_plots(browser_page):
    """When the browser cannot decode the picture (its build lacks the codec), the binaural track becomes the
    clock: play, switch and seek still work and the page says why there is no picture."""
    page, _ = browser_page
    page.route(
        "**/media/video.mp4", lambda route: route.fulfill(status=200, content_type="video/mp4", body=b"\0" * 4096)
    )
    page.reload()
    _until(page, "window.ccsView && ccsView.clock() === ccsView.audios.binaural")
    assert page.is_visible("#notice") and "cannot play the video" in page.inner_text("#notice")
    page.keyboard.press("Space")
    _until(page, "ccsView.clock().currentTime >= 1.0")
    page.keyboard.press("a")
    assert page.evaluate("ccsView.active()") == "original"
    # the heard track joins the clock within 50 ms inside 2 s (as above: a loaded host needs a moment for the seek)
    _until(page, "Math.abs(ccsView.audios.original.currentTime - ccsView.clock().currentTime) <= 0.05", timeout_s=2.0)
