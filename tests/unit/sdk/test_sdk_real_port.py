"""The urllib transport against FakeSideband.serve() and a few hand-made local servers."""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helio
from helio import HelioContext, TransportRequest, UrllibTransport
from helio.testing import FakeSideband


@contextmanager
def local_server(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A throwaway HTTP server on 127.0.0.1 whose every GET/POST is answered by ``respond``."""

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


def test_a_context_works_end_to_end_over_a_real_port(fake: FakeSideband):
    with fake.serve() as url, HelioContext(url, "s1", token=fake.token) as ctx:
        call_id = fake.record_tool_call("s1", "orders.lookup")
        receipt = ctx.mark_evidence("orders.lookup", "order_data", {"id": 7, "name": "Zoë"}, call_id=call_id)
        ctx.set("tier", "gold")
        ctx.declare_dependency("orders.refund", ["orders.lookup"])
        ctx.require_evidence(["order_data", "refund_policy"])
        report = ctx.get_evidence_state()
        healthy = ctx.client.health()

    assert receipt.verified is True
    assert report.satisfied == ["order_data"]
    assert report.missing == ["refund_policy"]
    assert report.state.evidence["order_data"].data == {"id": 7, "name": "Zoë"}
    assert report.state.context == {"tier": "gold"}
    assert healthy is True
    assert [call.status for call in fake.calls] == [201, 201, 201, 200, 200]
    assert fake.calls[0].headers["authorization"] == f"Bearer {fake.token}"
    assert fake.calls[0].headers["content-type"] == "application/json"


def test_error_answers_over_a_real_port_raise_the_same_errors_as_in_process(fake: FakeSideband):
    with fake.serve() as url:
        with pytest.raises(helio.HelioAuthError) as unauthorized:
            helio.HelioClient(url, token="wrong").get_session_state("s1")
        with pytest.raises(helio.HelioValidationError) as not_allowed:
            helio.HelioClient(url, token=fake.token).mark_evidence("s1", "t", "unknown_key", 1)
        with pytest.raises(helio.HelioPayloadTooLargeError) as too_large:
            helio.HelioClient(url, token=fake.token).set_context("s1", "k", "x" * (1 << 20))

    assert (unauthorized.value.status_code, unauthorized.value.code) == (401, "unauthorized")
    assert not_allowed.value.allowed_keys == ["customer_verified", "order_data", "refund_policy"]
    assert (too_large.value.status_code, too_large.value.code) == (413, "request_body_too_large")


def test_origin_and_options_are_forbidden_over_a_real_port(fake: FakeSideband):
    transport = UrllibTransport()
    with fake.serve() as url:
        with_origin = transport(TransportRequest("GET", url + "/healthz", {"origin": "null"}))
        preflight = transport(TransportRequest("OPTIONS", url + "/evidence"))

    assert with_origin.status == preflight.status == 403
    assert [call.response["code"] for call in fake.calls] == ["origin_forbidden", "method_forbidden"]


def test_a_sideband_slower_than_the_timeout_raises_a_timeout_error():
    release = threading.Event()

    def stall(handler: BaseHTTPRequestHandler) -> None:
        release.wait(timeout=5)

    with local_server(stall) as url:
        client = helio.HelioClient(url, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(helio.HelioTimeoutError):
            client.health()
        elapsed = time.monotonic() - started
        release.set()

    assert elapsed < 4


def test_a_port_nobody_listens_on_raises_a_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(helio.HelioConnectionError) as caught:
        helio.HelioClient(f"http://127.0.0.1:{port}", timeout=2).health()

    assert caught.value.status_code is None


def test_a_redirect_is_not_followed_so_the_token_never_reaches_another_server(fake: FakeSideband):
    with fake.serve() as elsewhere:

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(307)
            handler.send_header("location", elsewhere + "/session/s1/state")
            handler.send_header("content-length", "0")
            handler.end_headers()

        with local_server(redirect) as url, pytest.raises(helio.HelioHTTPError) as caught:
            helio.HelioClient(url, token="s3cret").get_session_state("s1")

    assert caught.value.status_code == 307
    assert fake.calls == []


def test_loopback_requests_ignore_proxy_environment_variables(
    fake: FakeSideband, monkeypatch: pytest.MonkeyPatch
):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with fake.serve() as url:
        assert helio.HelioClient(url, token=fake.token).health() is True


def test_an_answer_that_is_not_http_raises_a_protocol_error():
    def garbage(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"this is not http\r\n\r\n")
        handler.close_connection = True

    with local_server(garbage) as url, pytest.raises(helio.HelioProtocolError):
        helio.HelioClient(url, timeout=2).health()
