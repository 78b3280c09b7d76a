"""``helio.instrument()`` against the real HTTP libraries, over real sockets.

Two local servers stand in for the proxy and for some other host; each records the headers of
every request it gets. The proxy's URL is the only one given to ``instrument()``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests

import helio
from helio import HelioContext

HEADER = "x-helio-session-id"
WAIT = 10.0


@dataclass
class Recorder:
    """A local HTTP server that records each request's path and headers."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    barrier: threading.Barrier | None = None
    redirect_to: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sessions(self) -> list[str | None]:
        return [headers.get(HEADER) for _path, headers in self.seen]


@pytest.fixture
def recorders() -> Iterator[Callable[[], Recorder]]:
    started: list[tuple[Recorder, threading.Thread]] = []

    def start() -> Recorder:
        recorder: Recorder

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if recorder.barrier is not None and self.path.startswith("/together"):
                    recorder.barrier.wait(timeout=WAIT)
                if recorder.redirect_to is not None and self.path.startswith("/redirect"):
                    self.send_response(307)
                    self.send_header("location", f"{recorder.redirect_to}/landed")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"path": self.path, "session": self.headers.get(HEADER)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                return None

        recorder = Recorder(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        thread = threading.Thread(target=recorder.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((recorder, thread))
        return recorder

    yield start
    for recorder, thread in started:
        recorder.server.shutdown()
        recorder.server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    helio.uninstrument()
    yield
    helio.uninstrument()


def context(session_id: str) -> HelioContext:
    """A context that never talks to a sideband (these tests only need its session id)."""
    return HelioContext("http://127.0.0.1:9", session_id, token="")


# One GET per library and flavour; each returns the status code (redirects are followed).
def httpx_sync(url: str) -> int:
    with httpx.Client(follow_redirects=True) as client:
        return client.get(url).status_code


def httpx2_sync(url: str) -> int:
    with httpx2.Client(follow_redirects=True) as client:
        return client.get(url).status_code


def requests_sync(url: str) -> int:
    with requests.Session() as session:
        return session.get(url, timeout=WAIT).status_code


async def httpx_async(url: str) -> int:
    async with httpx.AsyncClient(follow_redirects=True) as client:
        return (await client.get(url)).status_code


async def httpx2_async(url: str) -> int:
    async with httpx2.AsyncClient(follow_redirects=True) as client:
        return (await client.get(url)).status_code


async def aiohttp_async(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


SYNC: dict[str, Callable[[str], int]] = {
    "httpx": httpx_sync,
    "httpx2": httpx2_sync,
    "requests": requests_sync,
}
ASYNC: dict[str, Callable[[str], Awaitable[int]]] = {
    "httpx": httpx_async,
    "httpx2": httpx2_async,
    "aiohttp": aiohttp_async,
}
EVERY = [*(f"{name}-sync" for name in SYNC), *(f"{name}-async" for name in ASYNC)]


def get(client: str, url: str) -> int:
    name, _, flavour = client.rpartition("-")
    if flavour == "sync":
        return SYNC[name](url)
    return asyncio.run(ASYNC[name](url))


@pytest.mark.parametrize("client", EVERY)
def test_inside_a_context_a_request_to_the_proxy_carries_its_session_and_outside_none(
    client: str, recorders: Callable[[], Recorder]
) -> None:
    proxy = recorders()
    helio.instrument(proxy_urls=[f"{proxy.url}/mcp"])
    with context("run-1"):
        assert get(client, f"{proxy.url}/mcp") == 200
    assert get(client, f"{proxy.url}/mcp") == 200
    assert proxy.sessions() == ["run-1", None]


@pytest.mark.parametrize("client", EVERY)
def test_a_request_to_another_host_carries_no_session_header(
    client: str, recorders: Callable[[], Recorder]
) -> None:
    proxy, other = recorders(), recorders()
    helio.instrument(proxy_urls=[f"{proxy.url}/mcp"])
    with context("run-1"):
        assert get(client, f"{other.url}/mcp") == 200
    assert other.sessions() == [None]
    assert proxy.seen == []


@pytest.mark.parametrize("client", EVERY)
def test_a_redirect_from_the_proxy_to_another_host_does_not_take_the_session_along(
    client: str, recorders: Callable[[], Recorder]
) -> None:
    proxy, other = recorders(), recorders()
    proxy.redirect_to = other.url
    helio.instrument(proxy_urls=[proxy.url])
    with context("run-1"):
        assert get(client, f"{proxy.url}/redirect") == 200
    assert proxy.sessions() == ["run-1"]
    assert other.seen == [("/landed", other.seen[0][1])]
    assert other.sessions() == [None]


@pytest.mark.parametrize("client", EVERY)
def test_uninstrument_stops_adding_the_header(client: str, recorders: Callable[[], Recorder]) -> None:
    proxy = recorders()
    helio.instrument(proxy_urls=[proxy.url])
    helio.uninstrument()
    with context("run-1"):
        assert get(client, f"{proxy.url}/mcp") == 200
    assert proxy.sessions() == [None]


def test_a_session_header_the_caller_set_is_left_as_it_is(recorders: Callable[[], Recorder]) -> None:
    proxy = recorders()
    helio.instrument(proxy_urls=[proxy.url])
    with context("run-1"), httpx.Client(headers={HEADER: "chosen-by-caller"}) as client:
        client.get(f"{proxy.url}/mcp")
    with context("run-1"), requests.Session() as session:
        session.get(f"{proxy.url}/mcp", headers={HEADER: "chosen-by-caller"}, timeout=WAIT)
    assert proxy.sessions() == ["chosen-by-caller", "chosen-by-caller"]


def test_localhost_and_127_0_0_1_count_as_the_same_proxy_host(recorders: Callable[[], Recorder]) -> None:
    proxy = recorders()
    port = proxy.server.server_address[1]
    helio.instrument(proxy_urls=[f"http://localhost:{port}/mcp"])
    with context("run-1"):
        httpx_sync(f"http://127.0.0.1:{port}/mcp")
    assert proxy.sessions() == ["run-1"]


def test_a_request_object_sent_again_in_another_context_carries_the_new_session(
    recorders: Callable[[], Recorder],
) -> None:
    proxy = recorders()
    helio.instrument(proxy_urls=[proxy.url])
    with requests.Session() as session:
        prepared = session.prepare_request(requests.Request("GET", f"{proxy.url}/mcp"))
        with context("run-1"):
            session.send(prepared, timeout=WAIT)
        with context("run-2"):
            session.send(prepared, timeout=WAIT)
        session.send(prepared, timeout=WAIT)
    with httpx.Client() as client:
        request = client.build_request("GET", f"{proxy.url}/mcp")
        with context("run-1"):
            client.send(request)
        with context("run-2"):
            client.send(request)
    assert proxy.sessions() == ["run-1", "run-2", None, "run-1", "run-2"]


@pytest.mark.parametrize("client", list(ASYNC))
async def test_two_concurrent_asyncio_tasks_are_attributed_to_their_own_sessions(
    client: str, recorders: Callable[[], Recorder]
) -> None:
    proxy = recorders()
    proxy.barrier = threading.Barrier(2)  # neither request is answered until both have arrived
    helio.instrument(proxy_urls=[proxy.url])
    send = ASYNC[client]

    async def agent(session_id: str) -> int:
        async with context(session_id):
            return await send(f"{proxy.url}/together/{session_id}")

    async with asyncio.timeout(WAIT):
        statuses = await asyncio.gather(agent("task-a"), agent("task-b"))
    assert statuses == [200, 200]
    assert sorted((path, headers.get(HEADER)) for path, headers in proxy.seen) == [
        ("/together/task-a", "task-a"),
        ("/together/task-b", "task-b"),
    ]


@pytest.mark.parametrize("client", list(SYNC))
def test_two_threads_are_attributed_to_their_own_sessions(
    client: str, recorders: Callable[[], Recorder]
) -> None:
    proxy = recorders()
    proxy.barrier = threading.Barrier(2)
    helio.instrument(proxy_urls=[proxy.url])
    send = SYNC[client]
    statuses: dict[str, int] = {}

    def agent(session_id: str) -> None:
        with context(session_id):
            statuses[session_id] = send(f"{proxy.url}/together/{session_id}")

    threads = [threading.Thread(target=agent, args=(name,)) for name in ("thread-a", "thread-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert statuses == {"thread-a": 200, "thread-b": 200}
    assert sorted((path, headers.get(HEADER)) for path, headers in proxy.seen) == [
        ("/together/thread-a", "thread-a"),
        ("/together/thread-b", "thread-b"),
    ]


def _seams() -> dict[str, Any]:
    return {
        "httpx.Client": httpx.Client.__dict__["_send_single_request"],
        "httpx.AsyncClient": httpx.AsyncClient.__dict__["_send_single_request"],
        "httpx2.Client": httpx2.Client.__dict__["_send_single_request"],
        "httpx2.AsyncClient": httpx2.AsyncClient.__dict__["_send_single_request"],
        "aiohttp.ClientRequest": aiohttp.ClientRequest.__dict__["send"],
        "requests.Session": requests.Session.__dict__["send"],
    }


def test_uninstrument_restores_the_exact_original_functions() -> None:
    originals = _seams()
    helio.instrument(proxy_urls=["http://127.0.0.1:3000/mcp"])
    patched = _seams()
    assert all(patched[name] is not originals[name] for name in originals)
    assert all(patched[name].__wrapped__ is originals[name] for name in originals)
    helio.instrument(proxy_urls=["http://127.0.0.1:3001/mcp"])  # again: replaces, never stacks
    assert all(_seams()[name].__wrapped__ is originals[name] for name in originals)
    helio.uninstrument()
    assert all(_seams()[name] is originals[name] for name in originals)
    helio.uninstrument()
    assert all(_seams()[name] is originals[name] for name in originals)


def test_instrument_can_be_limited_to_some_libraries() -> None:
    originals = _seams()
    helio.instrument(proxy_urls=["http://127.0.0.1:3000/mcp"], libraries=["httpx2"])
    changed = {name for name, value in _seams().items() if value is not originals[name]}
    assert changed == {"httpx2.Client", "httpx2.AsyncClient"}


def test_helio_context_instrument_true_uses_helio_proxy_url(
    recorders: Callable[[], Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, other = recorders(), recorders()
    monkeypatch.setenv("HELIO_MCP_URL", f"{proxy.url}/mcp")
    with HelioContext("http://127.0.0.1:9", "run-1", token="", instrument=True):
        httpx2_sync(f"{proxy.url}/mcp")
        httpx2_sync(f"{other.url}/mcp")
    assert proxy.sessions() == ["run-1"]
    assert other.sessions() == [None]


PROBE = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("x-helio-session-id"))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/mcp"
library = sys.argv[1]
order = sys.argv[2]

import helio

if order == "after":
    __import__(library)
helio.instrument(proxy_urls=[url])
imported_by_instrument = library in sys.modules and order == "before"
if order == "before":
    __import__(library)

with helio.HelioContext("http://127.0.0.1:9", "probe-session", token=""):
    if library in ("httpx", "httpx2"):
        module = sys.modules[library]
        module.get(url)
    elif library == "requests":
        import requests
        requests.get(url, timeout=10)
    else:
        import asyncio, aiohttp

        async def main():
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                await response.read()

        asyncio.run(main())
server.shutdown()
print(json.dumps({"seen": seen, "imported_by_instrument": imported_by_instrument}))
"""


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("library", ["httpx", "httpx2", "aiohttp", "requests"])
def test_instrumenting_before_or_after_the_library_is_imported_both_work(library: str, order: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, library, order],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"seen": ["probe-session"], "imported_by_instrument": False}


def test_a_context_with_instrument_true_keeps_settings_given_to_instrument_before(
    recorders: Callable[[], Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, from_env = recorders(), recorders()
    helio.instrument(proxy_urls=[chosen.url], libraries=["httpx"])
    monkeypatch.setenv("HELIO_MCP_URL", from_env.url)
    with HelioContext("http://127.0.0.1:9", "run-1", token="", instrument=True):
        httpx_sync(f"{chosen.url}/mcp")
        httpx_sync(f"{from_env.url}/mcp")
        httpx2_sync(f"{chosen.url}/mcp")
    assert chosen.sessions() == ["run-1", None]
    assert from_env.sessions() == [None]
