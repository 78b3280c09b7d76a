"""Running ASGI apps on pre-bound sockets inside the proxy's own event loop.

The agent-facing MCP listener runs on the proxy's own lean HTTP/1.1 server
(:mod:`helio_proxy.transports.downstream.http1`); the dashboard and the SDK sideband on uvicorn.

The proxy owns signal handling (one SIGINT/SIGTERM stops every listener), so uvicorn's own
signal capture is switched off. So is uvicorn's belief in ``X-Forwarded-For`` from loopback
(its default, also read from ``FORWARDED_ALLOW_IPS``): a listener takes the client address and
scheme from forwarding headers only when given ``trusted_proxies``, and then only from those.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn

from helio_proxy.errors import StartupError
from helio_proxy.transports.downstream.http1 import Http1Server


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int, what: str, *, reuse_port: bool = False) -> socket.socket:
    """Bind a listening TCP socket, or raise :class:`StartupError` with the fix.

    ``reuse_port``: share the port with the other workers of ``helio start --workers N``
    (``SO_REUSEPORT``: the kernel spreads new connections across them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and accepted connections inherit the listener's. With proto 0, a stock
    # asyncio loop (no uvloop: Windows, an embedding app) left Nagle on, and uvicorn's reply, head
    # and body written separately, waited out the client's delayed ACK: 40 ms per call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = f" (another process uses it; stop it or change {what}.port)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = f" (no such local address; check {what}.host)"
        raise StartupError(f"cannot listen on {host}:{port} for {what}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


class Listener:
    """One ASGI app served on one bound socket.

    ``lean``: served by :class:`~helio_proxy.transports.downstream.http1.Http1Server` (the MCP
    listener, the hot path: plain HTTP, no lifespan, no forwarding headers), else by uvicorn."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        name: str,
        *,
        trusted_proxies: Sequence[str] = (),
        lean: bool = False,
    ) -> None:
        self.name = name
        self.sock = sock
        self.lean: Http1Server | None = None
        if lean:
            if trusted_proxies:
                raise ValueError("the lean server takes no forwarding headers")
            self.lean = Http1Server(app, keep_alive=30, graceful=5)
            return
        config = uvicorn.Config(
            app,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),
            loop="none",
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,
        )
        self.server = _Server(config)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def serve(self) -> None:
        if self.lean is not None:
            await self.lean.serve(self.sock)
        else:
            await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        if self.lean is not None:
            self.lean.stop()
        else:
            self.server.should_exit = True
