"""The sideband served by the real proxy process (``HelioApp``) on a real loopback socket."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.errors import StartupError
from helio_proxy.server import bind

SDK_CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 0}
dashboard: {enabled: false}
sdk: {enabled: true, port: 0}
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data]}
"""


@asynccontextmanager
async def running(config_text: str, environ: dict[str, str]) -> AsyncIterator[tuple[HelioApp, io.StringIO]]:
    config = parse_config_text(config_text, source="test.yaml")
    loaded = LoadedConfig(config=config, path=Path("test.yaml"), sha256="0" * 64, warnings=config.warnings())
    out = io.StringIO()
    app = HelioApp(loaded, out=out, environ=environ)
    await app.start()
    try:
        yield app, out
    finally:
        await app.stop()


async def test_sideband_serves_on_its_own_port_with_the_printed_token() -> None:
    environ: dict[str, str] = {}
    async with running(SDK_CONFIG, environ) as (app, out):
        lines = out.getvalue().splitlines()
        assert f"SDK sideband listening on {app.sideband_url}" in lines
        prompt = lines.index("SDK token (pass as HELIO_SDK_TOKEN to your SDK clients):")
        token = lines[prompt + 1]
        assert token == environ["HELIO_SDK_TOKEN"]
        assert len(token) == 64
        assert app.sideband_url != app.mcp_url.removesuffix("/mcp")
        async with httpx.AsyncClient(base_url=app.sideband_url, timeout=5) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/session/s1/state")).status_code == 401
            auth = {"authorization": f"Bearer {token}"}
            marked = await http.post(
                "/evidence",
                headers=auth,
                json={
                    "session_id": "s1",
                    "tool_name": "orders.lookup",
                    "evidence_key": "order_data",
                    "evidence_data": 7,
                },
            )
            assert marked.status_code == 201
            state = (await http.get("/session/s1/state", headers=auth)).json()
            assert state["evidence"]["order_data"]["data"] == 7
            assert app.sessions.session_count == 1  # the store the gateway will read


async def test_a_token_from_the_environment_is_used_and_not_echoed() -> None:
    async with running(SDK_CONFIG, {"HELIO_SDK_TOKEN": "from-env-token"}) as (app, out):
        assert "SDK token: taken from HELIO_SDK_TOKEN" in out.getvalue().splitlines()
        assert "from-env-token" not in out.getvalue()
        async with httpx.AsyncClient(base_url=app.sideband_url, timeout=5) as http:
            response = await http.get("/session/s1/state", headers={"authorization": "Bearer from-env-token"})
            assert response.status_code == 200


async def test_a_two_mib_body_gets_its_413_over_a_real_socket() -> None:
    async with running(SDK_CONFIG, {"HELIO_SDK_TOKEN": "t"}) as (app, _):
        async with httpx.AsyncClient(base_url=app.sideband_url, timeout=5) as http:
            response = await http.post("/evidence", content=b"x" * (2 << 20))
            assert response.status_code == 413
            assert response.json()["code"] == "request_body_too_large"
            assert (await http.get("/healthz")).status_code == 200


async def test_writes_get_503_once_shutdown_begins() -> None:
    async with running(SDK_CONFIG, {"HELIO_SDK_TOKEN": "t"}) as (app, _):
        assert app.sideband is not None
        app.sideband.begin_shutdown()
        async with httpx.AsyncClient(base_url=app.sideband_url, timeout=5) as http:
            response = await http.post(
                "/context",
                headers={"authorization": "Bearer t"},
                json={"session_id": "s", "key": "k", "value": 1},
            )
            assert response.status_code == 503
            assert response.json()["code"] == "sideband_shutting_down"


async def test_no_sideband_unless_sdk_is_enabled() -> None:
    environ: dict[str, str] = {}
    async with running(SDK_CONFIG.replace("enabled: true, ", ""), environ) as (app, out):
        assert [listener.name for listener in app.listeners] == ["mcp"]
        assert "SDK" not in out.getvalue()
        assert environ == {}
        with pytest.raises(RuntimeError):
            _ = app.sideband_url


async def test_a_busy_sdk_port_fails_startup_naming_sdk_port() -> None:
    busy = bind("127.0.0.1", 0, "test")
    try:
        text = SDK_CONFIG.replace("port: 0}\npolicies", f"port: {busy.getsockname()[1]}}}\npolicies")
        config = parse_config_text(text, source="test.yaml")
        loaded = LoadedConfig(config=config, path=Path("test.yaml"), sha256="0" * 64)
        with pytest.raises(StartupError, match=r"sdk\.port"):
            await HelioApp(loaded, out=io.StringIO(), environ={}).start()
    finally:
        busy.close()
