"""Serve any ``Transport`` (in practice ``FakeSideband``) over real HTTP on a loopback port."""

from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from helio._transport import Transport, TransportRequest
from helio._wire import MAX_BODY_BYTES

_DRAIN_LIMIT = 16 * MAX_BODY_BYTES
"""Oversized bodies up to this size are read and dropped; larger ones close the connection."""


@contextmanager
def serve_on_loopback(answer: Transport) -> Generator[str]:
    """Run a threaded HTTP server on ``127.0.0.1:<free port>`` and yield its base URL.

    Each request is read (at most 1 MiB + 1 byte of body are kept, enough for the 413 rule), handed to
    ``answer`` and its response written back. Bodies must come with ``Content-Length`` (every HTTP
    client sends one for a JSON body); a chunked upload is read as empty. The server thread is a
    daemon; leaving the block stops it and waits for it at most 5 seconds.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(answer))
    thread = Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="helio-fake-sideband")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _handler_for(answer: Transport) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def relay(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, MAX_BODY_BYTES + 1)) if length else b""
            # Drop the rest of an oversized body so the client reads its 413 instead of a reset.
            remaining = length - len(body)
            if remaining > _DRAIN_LIMIT:
                self.close_connection = True
                remaining = 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
            url = self.path if "://" in self.path else "http://127.0.0.1" + self.path
            request = TransportRequest(self.command, url, dict(self.headers.items()), body)
            response = answer(request)
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = relay

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
