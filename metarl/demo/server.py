"""`metarl demo`'s HTTP server: one static page and one JSON endpoint, standard library only.

- `GET /` the page (`static/index.html`: plain HTML, CSS and JS, nothing fetched elsewhere);
- `GET /api/info` the model's name, provenance summary, N range and default steps;
- `POST /api/classify` with `{"support": [PNG data URL, ...], "query": PNG data URL,
  "steps": int}` answers `{"probabilities": [...], "steps": int, "seconds": float}`.

Bad requests get a JSON `{"error": ...}` with a 4xx status and never reach the model: 413 for a
body over `MAX_BODY` (not read), 411 without a Content-Length, 400 for malformed JSON, drawings
or fields (a JSON nested too deeply or an integer too long included), 404 for other paths,
405 for other methods. Requests run in threads
(`ThreadingHTTPServer`), adaptation one at a time behind a lock; a request that waits more than
`LOCK_WAIT` seconds for it gets 503 instead of queueing forever, and a client that stalls
mid-request is dropped after `Handler.timeout` seconds. An unexpected failure is a 500 for that
request only; the server keeps serving.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from metarl.demo.classifier import MAX_STEPS, MIN_WAYS, FewShotClassifier
from metarl.demo.drawings import CANVAS, PEN, BadDrawing, decode

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2 << 20
"""Bytes a request body may have: six 210x210 canvases as PNG data URLs stay far below it."""
LOCK_WAIT = 30.0


class BadRequest(Exception):
    """An error answer; `unread` when the request's body is still on the socket."""

    def __init__(self, status: HTTPStatus, message: str, unread: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unread = unread


class DemoServer(ThreadingHTTPServer):
    """Serves the page for one classifier; `info` is what `/api/info` answers."""

    daemon_threads = True
    request_queue_size = 1024
    """The listen backlog (socketserver's default of 5 reset connections under a burst of a
    few hundred requests; Linux caps it at net.core.somaxconn)."""

    def __init__(
        self, address: tuple[str, int], classifier: FewShotClassifier, info: dict[str, Any]
    ) -> None:
        if ":" in address[0]:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.classifier = classifier
        self.info = {
            **info,
            "min_ways": MIN_WAYS,
            "max_ways": classifier.max_ways,
            "default_steps": classifier.default_steps,
            "max_steps": MAX_STEPS,
            "canvas": CANVAS,
            "pen": PEN,
            "mode": "non-transductive: the query is classified in one batch with the support set",
        }
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (closed the tab, timed out) is no error of the server's:
        nothing is logged. Anything else is one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        print(f"metarl demo: request from {client_address[0]} failed: {error!r}", file=sys.stderr)

    def process_request(self, request: Any, client_address: Any) -> None:
        """As ThreadingMixIn does, with the thread named (for `busy`)."""
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"metarl-demo-request-{client_address[1]}",
            daemon=True,
        )
        thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def parse_classify(body: bytes, max_ways: int) -> tuple[list[Any], Any, int]:
    """The drawings and steps of a classify request, or `BadRequest` (400) saying what is
    wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, or an integer too long
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "expected a JSON object")
    support = data.get("support")
    if not isinstance(support, list) or not MIN_WAYS <= len(support) <= max_ways:
        got = len(support) if isinstance(support, list) else type(support).__name__
        raise BadRequest(
            HTTPStatus.BAD_REQUEST,
            f"support: expected a list of {MIN_WAYS} to {max_ways} drawings, got {got}",
        )
    steps = data.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_STEPS:
        raise BadRequest(
            HTTPStatus.BAD_REQUEST, f"steps: expected an integer 0 to {MAX_STEPS}, got {steps!r}"
        )
    return support, data.get("query"), steps


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    timeout = 15.0  # seconds a stalled client may hold its thread
    protocol_version = "HTTP/1.1"

    # -- responses ----------------------------------------------------------------------
    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`Connection: close` in `headers` closes the connection after the response (when
        the request's body was not read, it must not be taken for the next request)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if (headers or {}).get("Connection") == "close":
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict[str, Any], **headers: str) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: HTTPStatus, message: str, **headers: str) -> None:
        self._json(status, {"error": message}, **headers)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls nothing, but a drawing session is many requests."""

    # -- routes -------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            page = (STATIC / "index.html").read_bytes()
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(HTTPStatus.OK, self.server.info)
        elif path == "/api/classify":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"use POST for {path}", Allow="POST")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        close = {"Connection": "close"}  # the body is not read
        if path in ("/", "/index.html", "/api/info"):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"use GET for {path}", Allow="GET", **close)
            return
        if path != "/api/classify":
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {path}", **close)
            return
        try:
            payload = self._classify()
        except BadRequest as e:
            self._error(e.status, str(e), **(close if e.unread else {}))
            return
        except Exception as e:  # one failed request must not take the server down
            print(f"metarl demo: request failed: {e!r}", file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "adaptation failed; see the server log")
            return
        self._json(HTTPStatus.OK, payload)

    def _other_method(self) -> None:
        allow = "POST" if self.path.split("?")[0] == "/api/classify" else "GET"
        message = f"{self.command} is not supported"
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, message, Allow=allow, Connection="close")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other_method

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest(
                HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required", unread=True
            )
        try:
            size = int(length)
        except ValueError:
            raise BadRequest(
                HTTPStatus.BAD_REQUEST, f"Content-Length {length!r}", unread=True
            ) from None
        if size > MAX_BODY:  # answered without reading it: the connection is closed after
            raise BadRequest(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {size} bytes; at most {MAX_BODY}",
                unread=True,
            )
        if size < 0:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r}", unread=True)
        try:
            body = self.rfile.read(size)
        except TimeoutError:
            raise BadRequest(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive", True) from None
        if len(body) < size:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "the body ended early", unread=True)
        return body

    def _classify(self) -> dict[str, Any]:
        classifier = self.server.classifier
        support, query, steps = parse_classify(self._read_body(), classifier.max_ways)
        try:
            drawings = np.stack(
                [decode(d, f"support drawing {i + 1}") for i, d in enumerate(support)]
            )
            query_pixels = decode(query, "query drawing")
        except BadDrawing as e:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None
        if not self.server.lock.acquire(timeout=LOCK_WAIT):
            raise BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "busy; try again")
        try:
            prediction = classifier.classify(drawings, query_pixels, steps)
        finally:
            self.server.lock.release()
        return {
            "probabilities": prediction.probabilities,
            "steps": prediction.steps,
            "seconds": prediction.seconds,
        }
