"""Where the SDK finds the sideband: ``sideband_url``, ``HELIO_SDK_URL``, the default; its old name
``proxy_url``; and what it says when the URL answers but is not the sideband."""

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helio
from helio import HelioClient, HelioContext
from helio.testing import FakeSideband


@contextmanager
def local_server(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A throwaway HTTP server on 127.0.0.1 answering every GET/POST with ``respond``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            respond(self)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _mcp_endpoint_like(handler: BaseHTTPRequestHandler) -> None:
    """Answers like the proxy's MCP port does for a path it does not serve."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "not found"}})
    handler.send_response(404)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body.encode())


def _html_page(handler: BaseHTTPRequestHandler) -> None:
    body = b"<html>a web page</html>"
    handler.send_response(200)
    handler.send_header("content-type", "text/html")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_without_a_url_the_sdk_reads_helio_sdk_url_from_the_environment(monkeypatch, fake: FakeSideband):
    with fake.serve() as url:
        monkeypatch.setenv("HELIO_SDK_URL", url + "/")
        monkeypatch.setenv("HELIO_SDK_TOKEN", fake.token)
        with HelioContext(session_id="s1") as ctx:
            ctx.set("tier", "gold")

    assert ctx.client.sideband_url == url
    assert [(call.method, call.path, call.status) for call in fake.calls] == [("POST", "/context", 201)]


def test_a_url_given_in_code_wins_over_helio_sdk_url_and_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("HELIO_SDK_URL", "http://127.0.0.1:4200")
    assert HelioClient("http://127.0.0.1:4300").sideband_url == "http://127.0.0.1:4300"
    assert HelioContext(sideband_url="http://127.0.0.1:4301").client.sideband_url == "http://127.0.0.1:4301"
    assert HelioClient().sideband_url == "http://127.0.0.1:4200"
    monkeypatch.setenv("HELIO_SDK_URL", "")
    assert HelioClient().sideband_url == "http://127.0.0.1:3200"


def test_a_malformed_helio_sdk_url_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("HELIO_SDK_URL", "127.0.0.1:3200")
    with pytest.raises(ValueError, match="HELIO_SDK_URL must be an http"):
        HelioContext()


def test_proxy_url_still_works_as_the_deprecated_old_name_and_the_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning, match="sideband_url") as caught:
        ctx = HelioContext(proxy_url="http://127.0.0.1:3201")
    with pytest.warns(DeprecationWarning, match="sideband_url"):
        client = HelioClient(proxy_url="http://127.0.0.1:3202")

    assert ctx.client.sideband_url == "http://127.0.0.1:3201"
    assert (client.sideband_url, client.proxy_url) == ("http://127.0.0.1:3202",) * 2
    assert caught[0].filename == __file__


def test_the_new_name_and_a_positional_url_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HelioContext("http://127.0.0.1:3201", "s1")
        HelioContext(sideband_url="http://127.0.0.1:3201")


def test_giving_both_the_new_and_the_old_name_is_an_error():
    with pytest.raises(TypeError, match="not both"):
        HelioContext(sideband_url="http://127.0.0.1:3201", proxy_url="http://127.0.0.1:3201")


def test_a_404_from_the_mcp_endpoint_says_it_is_not_the_sideband_naming_the_url_and_the_fix():
    with local_server(_mcp_endpoint_like) as url, HelioContext(url, "s1", token="sekrit-token") as ctx:
        with pytest.raises(helio.HelioNotSidebandError) as caught:
            ctx.mark_evidence("orders.lookup", "order_data", {"id": 7})

    error = caught.value
    assert isinstance(error, helio.HelioHTTPError)  # code that catches HelioHTTPError keeps working
    assert (error.status_code, error.url) == (404, url)
    assert (
        f"POST /evidence failed with HTTP 404; the server at {url} does not look like Helio's sideband"
        in str(error)
    )
    assert ":3200" in str(error)
    assert ":3000" in str(error)
    assert "HELIO_SDK_URL" in str(error)
    assert "sideband_url" in str(error)
    assert "sekrit-token" not in str(error)


def test_a_web_page_instead_of_json_also_says_the_url_may_not_be_the_sideband():
    with local_server(_html_page) as url, HelioClient(url, token="") as client:
        with pytest.raises(helio.HelioProtocolError) as caught:
            client.health()

    assert f"the server at {url} does not look like Helio's sideband" in str(caught.value)
