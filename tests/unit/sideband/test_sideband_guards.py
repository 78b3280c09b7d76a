"""Sideband guards, in their fixed order: Origin, OPTIONS, body size, token, JSON, route, method,
shutdown; and no traceback ever leaves the process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from helio_proxy.config import HelioConfig
from helio_proxy.evidence import InMemorySessionStore
from helio_proxy.sideband import MAX_BODY_BYTES, SidebandApp
from tests.unit.sideband.conftest import TOKEN

EVIDENCE = {
    "session_id": "s1",
    "tool_name": "orders.lookup",
    "evidence_key": "order_data",
    "evidence_data": {"id": 7},
}


def code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return response.json()["code"]


async def test_healthz_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN],
)
async def test_missing_or_wrong_token_is_401(client: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    client.headers.pop("authorization")
    response = await client.get("/session/s1/state", headers=headers)
    assert response.status_code == 401
    assert code(response) == "unauthorized"


async def test_the_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get("/session/s1/state", headers={"authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:3200", "https://evil.example", ""])
@pytest.mark.parametrize("path", ["/healthz", "/evidence", "/session/s1/state", "/nowhere"])
async def test_any_origin_header_is_403_even_with_a_valid_token(
    client: httpx.AsyncClient, origin: str, path: str
) -> None:
    response = await client.post(path, json=EVIDENCE, headers={"origin": origin})
    assert response.status_code == 403
    assert code(response) == "origin_forbidden"


@pytest.mark.parametrize("path", ["/healthz", "/evidence", "/nowhere"])
async def test_options_is_403(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(path)
    assert response.status_code == 403
    assert code(response) == "method_forbidden"


async def test_two_mib_body_is_413_by_content_length(client: httpx.AsyncClient) -> None:
    response = await client.post("/evidence", content=b"x" * (2 << 20))
    assert response.status_code == 413
    assert code(response) == "request_body_too_large"


async def test_oversized_streamed_body_is_413_while_reading(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * (64 << 10)
        yield b"x"

    response = await client.post("/evidence", content=chunks())
    assert response.status_code == 413
    assert code(response) == "request_body_too_large"


async def test_a_body_of_exactly_one_mib_is_read(client: httpx.AsyncClient) -> None:
    filler = "x" * (MAX_BODY_BYTES - 200)
    body = b'{"session_id": "s1", "key": "k", "value": "' + filler.encode() + b'"}'
    body += b" " * (MAX_BODY_BYTES - len(body))
    assert len(body) == MAX_BODY_BYTES
    response = await client.post("/context", content=body)
    assert response.status_code == 201


async def test_size_is_checked_before_the_token(client: httpx.AsyncClient) -> None:
    client.headers.pop("authorization")
    response = await client.post("/evidence", content=b"x" * (2 << 20))
    assert response.status_code == 413


async def test_origin_is_checked_before_the_token(client: httpx.AsyncClient) -> None:
    client.headers.pop("authorization")
    response = await client.get("/session/s1/state", headers={"origin": "null"})
    assert response.status_code == 403


async def test_token_is_checked_before_json_and_routes(client: httpx.AsyncClient) -> None:
    client.headers.pop("authorization")
    assert (await client.post("/evidence", content=b"{nope")).status_code == 401
    assert (await client.get("/nowhere")).status_code == 401


@pytest.mark.parametrize("body", [b"{nope", b"\xff\xfe", b'{"a": NaN}', b"[" * 10])
async def test_malformed_json_is_400_invalid_json(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/evidence", content=body)
    assert response.status_code == 400
    assert code(response) == "invalid_json"


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[" * 5_000 + b"]" * 5_000])
async def test_json_nested_past_the_depth_cap_is_422_input_limit_exceeded(
    client: httpx.AsyncClient, body: bytes
) -> None:
    """Issue 16: deep nesting is refused from the bytes, before the parser could recurse."""
    response = await client.post("/evidence", content=body)
    assert response.status_code == 422
    assert code(response) == "input_limit_exceeded"
    assert response.json()["details"] == {"limit": "max_json_depth", "max": 64}


async def test_invalid_json_is_reported_before_an_unknown_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/nowhere", content=b"{nope")
    assert code(response) == "invalid_json"


async def test_an_empty_post_body_is_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/context")
    assert response.status_code == 400
    assert code(response) == "invalid_json"


@pytest.mark.parametrize(
    "path",
    ["/", "/nowhere", "/evidence/", "/session/s1", "/session//state", "/session/a/b/state", "/api/evidence"],
)
async def test_unknown_routes_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert code(response) == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/evidence", "POST"),
        ("PUT", "/context", "POST"),
        ("DELETE", "/dependencies", "POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/session/s1/state", "GET"),
        ("PATCH", "/session/s1/state", "GET"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert code(response) == "method_not_allowed"
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/evidence", EVIDENCE),
        ("/context", {"session_id": "s1", "key": "k", "value": 1}),
        ("/dependencies", {"session_id": "s1", "tool_name": "t", "requires": ["a"]}),
    ],
)
async def test_writes_are_503_while_shutting_down(
    client: httpx.AsyncClient, sideband: SidebandApp, path: str, body: dict[str, object]
) -> None:
    sideband.begin_shutdown()
    response = await client.post(path, json=body)
    assert response.status_code == 503
    assert code(response) == "sideband_shutting_down"


async def test_reads_keep_working_while_shutting_down(
    client: httpx.AsyncClient, sideband: SidebandApp
) -> None:
    sideband.begin_shutdown()
    assert (await client.get("/session/s1/state")).status_code == 200
    assert (await client.get("/healthz")).status_code == 200


class BrokenStore(InMemorySessionStore):
    async def put_context(self, session_id: str, key: str, value: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")


async def test_unexpected_errors_are_500_without_detail(config: HelioConfig) -> None:
    app = SidebandApp(BrokenStore(), lambda: config, TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sideband") as http:
        response = await http.post(
            "/context",
            json={"session_id": "s1", "key": "k", "value": 1},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "code": "internal_error"}


def test_the_sideband_refuses_to_run_without_a_token(
    store: InMemorySessionStore, config: HelioConfig
) -> None:
    with pytest.raises(ValueError, match="token"):
        SidebandApp(store, lambda: config, "")


@pytest.mark.parametrize(
    ("host", "status"), [("127.0.0.1:3200", 200), ("localhost", 200), ("evil.example", 403)]
)
async def test_a_loopback_sideband_accepts_loopback_host_names_only(
    store: InMemorySessionStore, config: HelioConfig, host: str, status: int
) -> None:
    app = SidebandApp(store, lambda: config, TOKEN, bind_host="127.0.0.1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}") as http:
        response = await http.get("/healthz", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status
    if status == 403:
        assert code(response) == "host_forbidden"
