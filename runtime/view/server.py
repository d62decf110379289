"""A small HTTP server for the listening page (stdlib only): binds to 127.0.0.1, answers GET / HEAD for the
exact paths it was given and 404 for everything else, and answers Range requests so the browser can seek."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self'; "
    "img-src 'self' data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Resource:
    """One thing the server answers with: a file on disk or bytes held in memory, and its content type."""

    content_type: str
    path: Path | None = None
    body: bytes | None = None

    def size(self) -> int:
        return len(self.body) if self.body is not None else self.path.stat().st_size  # type: ignore[union-attr]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Return (first, last) of a single ``Range: bytes=`` request, None for the whole file (no header, or a
    form we answer in full: several ranges, other units), or "unsatisfiable"."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the final N bytes
        count = int(last)
        return (max(0, size - count), size - 1) if count and size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's name; silent on purpose
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(send_body=True)

    def _refuse(self, status: HTTPStatus, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, send_body: bool) -> None:
        resource = self.server.routes.get(urlsplit(self.path).path)  # exact match: no decoding, no joining
        if resource is None or not self.server.host_allowed(self.headers.get("Host", "")):
            self._refuse(HTTPStatus.NOT_FOUND)
            return
        try:
            size = resource.size()
        except OSError:
            self._refuse(HTTPStatus.NOT_FOUND)
            return
        wanted = byte_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable":
            self._refuse(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
            return
        first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if isinstance(wanted, tuple) else HTTPStatus.OK)
        if isinstance(wanted, tuple):
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Type", resource.content_type)
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if resource.content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        self.end_headers()
        if send_body:
            self._send(resource, first, last - first + 1)

    def _send(self, resource: Resource, first: int, count: int) -> None:
        try:
            if resource.body is not None:
                self.wfile.write(resource.body[first : first + count])
                return
            with open(resource.path, "rb") as f:  # type: ignore[arg-type]
                f.seek(first)
                while count > 0:
                    block = f.read(min(CHUNK, count))
                    if not block:
                        break
                    self.wfile.write(block)
                    count -= len(block)
        except (BrokenPipeError, ConnectionResetError):  # the browser dropped a request while seeking
            self.close_connection = True


class ViewServer(ThreadingHTTPServer):
    """Serves ``routes`` (URL path -> Resource) on 127.0.0.1; port 0 takes a free one."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, routes: dict[str, Resource], port: int = 0) -> None:
        self.routes = dict(routes)
        super().__init__((LOOPBACK, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}/"

    def handle_error(self, request, client_address) -> None:
        """A browser drops connections on every seek (reset while the request is read or the headers go out):
        that is not an error. Anything else is one line on stderr, not the stdlib's traceback."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        sys.stderr.write(f"ccs-view: request from {client_address[0]} failed: {type(error).__name__}: {error}\n")

    def host_allowed(self, host: str) -> bool:
        """Only requests addressed to this loopback server (a web page elsewhere cannot rebind a name to us)."""
        return host in (f"{LOOPBACK}:{self.server_port}", f"localhost:{self.server_port}")

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, ``ccs-run --view``); ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="ccs-view", daemon=True)
        thread.start()
        return thread
