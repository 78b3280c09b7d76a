"""Running ASGI apps on pre-bound sockets inside the proxy's own event loop.

The proxy owns signal handling (one SIGINT/SIGTERM stops every listener), so uvicorn's own
signal capture is switched off. So is uvicorn's belief in ``X-Forwarded-For`` from loopback
(its default, also read from ``FORWARDED_ALLOW_IPS``): a listener takes the client address and
scheme from forwarding headers only when given ``trusted_proxies``, and then only from those.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from helio_proxy.errors import StartupError


class _HeadWithBody:
    """A connection's transport that sends a reply's head together with what follows it.

    uvicorn writes a reply's status line and headers as soon as the app starts the reply, and its
    body in a second write. Each write is a system call, and on loopback one that wakes the client:
    a JSON reply cost two where one does. So a head is held until the next write joins it, or until
    the loop's next turn when nothing follows at once (a stream that waits for its first event), or
    a close. Whatever is held goes out before any later byte: order never changes. Everything else
    is the real transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through :class:`_HeadWithBody`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadWithBody(transport, self.loop))  # type: ignore[arg-type]


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
    """One ASGI app served on one bound socket."""

    def __init__(
        self, app: Any, sock: socket.socket, name: str, *, trusted_proxies: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.sock = sock
        config = uvicorn.Config(
            app,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),
            loop="none",
            http=_HttpProtocol,
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
        await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
