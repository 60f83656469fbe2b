"""Shared fixtures: real files on disk and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, claimed_length = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(claimed_length if claimed_length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)  # a claimed length larger than the body simulates a cut-off download

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """serve(path, body, claimed_length=None) -> URL on 127.0.0.1; the server stops after the test."""
    routes: dict = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(path: str, body: bytes, claimed_length: int | None = None) -> str:
        routes[path] = (body, claimed_length)
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    try:
        yield serve
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated_data(tmp_path_factory, monkeypatch) -> Path:
    """COURSE_DATA_DIR in a temp folder, so provenance records and caches never touch data/."""
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("COURSE_DATA_DIR", str(path))
    return path
