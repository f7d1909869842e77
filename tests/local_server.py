"""A file server on 127.0.0.1 for download tests: Range requests, cut transfers, oversized announcements.

`serve()` starts a ThreadingHTTPServer on a free port in a daemon thread and stops it (joining
the thread) when the `with` block ends; nothing else is contacted. Its attributes:

    files          path -> bytes it serves (404 for anything else)
    requests       (path, Range header) of every request, in order; tunnels as ("CONNECT host:port", None)
    honour_range   answer `Range: bytes=N-` with 206 (False: 200 and the whole file)
    cut_next       the next answer announces its full length, sends half and hangs up
    announce       path -> a Content-Length to claim instead of the real one (the body is not sent)
    base           http://127.0.0.1:<port>
"""
from __future__ import annotations

import re
import socket
import threading
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

LOCAL = "http://127.0.0.1:"


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck client cannot hold a server thread for long

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/octet-stream", **headers) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:  # as a proxy: no tunnels anywhere
        self.server.requests.append(("CONNECT " + self.path, None))
        self._send(403, b"no tunnels from tests", "text/plain")

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = urllib.parse.urlsplit(self.path).path
        if path in server.announce:
            self.send_response(200)
            self.send_header("Content-Length", str(server.announce[path]))
            self.end_headers()
            self.close_connection = True
            return
        if path not in server.files:
            return self._send(404, b"not found", "text/plain")
        body = server.files[path]
        start, code, headers = 0, 200, {}
        asked = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if asked and server.honour_range:
            start = int(asked.group(1))
            if start >= len(body):
                return self._send(416, b"", "text/plain", Content_Range=f"bytes */{len(body)}")
            code, headers = 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        payload = body[start:]
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if server.cut_next:  # the whole length announced, half of it sent, then hang up
            server.cut_next = False
            self.wfile.write(payload[:len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@contextmanager
def serve() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.announce, httpd.requests = {}, {}, []
    httpd.honour_range, httpd.cut_next = True, False
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_only(monkeypatch) -> list[str]:
    """Make every URL that utils.infra.download opens in-process be asserted local; proxies off.
    Returns the list the opened URLs are appended to."""
    from utils.infra import download as downloads

    for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    opened: list[str] = []
    real_get = downloads._get

    def guarded(url, headers, timeout):
        assert url.startswith(LOCAL), f"a test tried to open {url}"
        opened.append(url)
        return real_get(url, headers, timeout)

    monkeypatch.setattr(downloads, "_get", guarded)
    return opened
