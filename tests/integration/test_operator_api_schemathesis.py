"""Property tests of the operator API and the sideband against their own OpenAPI schemas (schemathesis).

The real proxy serves ``/api/*`` with some records, tickets and tool baselines in its store;
schemathesis generates requests for every operation in ``/api/openapi.json`` (a bounded number of
examples each, so this stays a few seconds) and checks every answer: never a 5xx, a status code
the schema lists, the content type it lists, and a body that matches its schema (every error is
the one error shape).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from helio_proxy.config import parse_config_text
from helio_proxy.evidence import InMemorySessionStore
from helio_proxy.sideband import SidebandApp
from tests.harness import serve_asgi
from tests.integration.test_console_api import SECRET, _call, _proxy, _wait_records

EXAMPLES: Final = 5
"""Examples per operation (about 25 operations)."""
SKIP: Final = {("GET", "/api/events")}
"""Streams until the client leaves: not a request/response operation."""
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _run(schema_doc: dict[str, Any], base_url: str, auth: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(schema_doc)
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=auth, timeout=10)
            case.validate_response(response, checks=CHECKS)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    return tested


async def test_every_operation_answers_within_its_schema_and_never_5xx(tmp_path: Path) -> None:
    async with (
        _proxy(tmp_path / "audit.db") as app,
        httpx.AsyncClient(timeout=10) as mcp,
        httpx.AsyncClient(base_url=app.dashboard_url, headers={"authorization": f"Bearer {SECRET}"}) as http,
    ):
        await _call(mcp, app, "a", "get_weather", {"city": "Oslo"}, "s-1")
        await _call(mcp, app, "a", "delete_user", {"user_id": "u-1"}, "s-1")
        await _wait_records(http, 2)
        doc = (await http.get("/api/openapi.json")).json()
        auth = {"authorization": f"Bearer {SECRET}"}
        tested = await asyncio.to_thread(_run, doc, app.dashboard_url, auth)
    assert "GET /api/audit" in tested
    assert "POST /api/tools/{name}/accept" in tested
    assert len(tested) == len(
        [(m, p) for p, ops in doc["paths"].items() for m in ops if (m.upper(), p) not in SKIP]
    )


SIDEBAND_TOKEN: Final = "sideband-schema-token"
SIDEBAND_CONFIG: Final = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 0}
dashboard: {enabled: false}
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data]}
"""


async def test_the_sideband_answers_within_its_schema_and_never_5xx() -> None:
    config = parse_config_text(SIDEBAND_CONFIG, source="test.yaml")
    app = SidebandApp(InMemorySessionStore(), lambda: config, SIDEBAND_TOKEN)
    auth = {"authorization": f"Bearer {SIDEBAND_TOKEN}"}
    async with serve_asgi(app, lifespan="off") as base, httpx.AsyncClient(base_url=base) as http:
        doc = (await http.get("/openapi.json", headers=auth)).json()
        assert (await http.get("/openapi.json")).json()["code"] == "unauthorized"
        tested = await asyncio.to_thread(_run, doc, base, auth)
    assert sorted(tested) == [
        "GET /healthz",
        "GET /session/{session_id}/state",
        "POST /context",
        "POST /dependencies",
        "POST /evidence",
    ]
