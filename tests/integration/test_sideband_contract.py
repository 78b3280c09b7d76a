"""Contract: our sideband and the SDK's ``helio.testing.FakeSideband`` answer the same requests
identically (status, ``code`` and every body field; only the human ``error`` text may differ).

Both run on one hand-moved clock, so even timestamps and expiries agree.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from helio import HelioContext, TransportRequest
from helio.testing import FakeSideband, ManualClock
from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.evidence import InMemorySessionStore, evidence_allowlist
from helio_proxy.sideband import SidebandApp

TOKEN = "contract-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 0}
dashboard: {enabled: false}
sdk: {enabled: true, port: 0}
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data, refund_policy]}
      requires: [orders.lookup]
"""


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: Any = None
    """A JSON value to send, or raw ``bytes``; ``None`` sends no body."""
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH))

    def raw(self) -> bytes:
        if self.body is None:
            return b""
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


def post(path: str, body: Any, **headers: str) -> Step:
    return Step("POST", path, body, {**AUTH, "content-type": "application/json", **headers})


def evidence(**overrides: Any) -> dict[str, Any]:
    body = {
        "session_id": "s1",
        "tool_name": "orders.lookup",
        "evidence_key": "order_data",
        "evidence_data": {"n": 1},
    }
    return {k: v for k, v in {**body, **overrides}.items() if v is not ...}


@dataclass
class Sides:
    clock: ManualClock
    store: InMemorySessionStore
    ours: SidebandApp
    fake: FakeSideband


async def _record_call(sides: Sides, session: str, tool: str, succeeded: bool, call_id: str) -> None:
    await sides.store.record_call(session, tool, call_id, succeeded)
    sides.fake.record_tool_call(session, tool, succeeded, call_id)


SEQUENCE: list[Step | tuple[str, Any]] = [
    Step("GET", "/healthz", headers={}),
    Step("GET", "/session/s1/state", headers={}),
    Step("GET", "/session/s1/state", headers={"authorization": "Bearer wrong"}),
    Step("GET", "/session/s1/state", headers={"authorization": f"bearer {TOKEN}"}),
    Step("GET", "/healthz", headers={"origin": "null"}),
    post("/evidence", evidence(), origin="https://app.example.com"),
    Step("OPTIONS", "/evidence"),
    post("/evidence", b"x" * ((1 << 20) + 1)),
    post("/evidence", b"{not json"),
    post("/evidence", b'{"a": NaN}'),
    Step("POST", "/evidence"),
    Step("GET", "/nowhere"),
    Step("GET", "/session/s1"),
    Step("GET", "/evidence"),
    Step("DELETE", "/session/s1/state"),
    Step("POST", "/healthz"),
    post("/evidence", evidence(ttl_seconds=600)),
    post("/evidence", evidence(evidence_key="refund_policy", evidence_data=None)),
    post("/evidence", evidence(evidence_key="not_in_policy")),
    post("/evidence", [1, 2]),
    post("/evidence", evidence(session_id=...)),
    post("/evidence", evidence(session_id="   ")),
    post("/evidence", evidence(session_id="s" * 257)),
    post("/evidence", evidence(tool_name="")),
    post("/evidence", evidence(evidence_key=3)),
    post("/evidence", evidence(evidence_data=...)),
    post("/evidence", evidence(ttl_seconds=0)),
    post("/evidence", evidence(ttl_seconds=86_401)),
    post("/evidence", evidence(ttl_seconds=True)),
    post("/evidence", evidence(ttl_seconds=30.0)),
    post("/evidence", evidence(call_id="")),
    ("record_call", ("s1", "orders.lookup", True, "c-ok")),
    ("record_call", ("s1", "orders.lookup", False, "c-bad")),
    ("record_call", ("s2", "orders.lookup", True, "c-other")),
    post("/evidence", evidence(call_id="c-ok")),
    post("/evidence", evidence(call_id="c-bad")),
    post("/evidence", evidence(call_id="c-other")),
    post("/evidence", evidence(call_id="c-ok", tool_name="orders.search")),
    post("/evidence", evidence(call_id=None, evidence_key="refund_policy", ttl_seconds=5)),
    post("/context", {"session_id": "s1", "key": "tier", "value": "gold"}),
    post("/context", {"session_id": "s1", "key": "tier", "value": {"changed": [1]}}),
    post("/context", {"session_id": "s1", "key": "", "value": 1}),
    post("/context", {"session_id": "s1", "key": "k"}),
    post("/dependencies", {"session_id": "s1", "tool_name": "orders.refund", "requires": ["a", "b"]}),
    post("/dependencies", {"session_id": "s1", "tool_name": "orders.refund", "requires": ["c", "b", "c"]}),
    post("/dependencies", {"session_id": "s1", "tool_name": "orders.refund", "requires": []}),
    post("/dependencies", {"session_id": "s1", "tool_name": "orders.refund"}),
    post("/dependencies", {"session_id": "s1", "requires": ["a"]}),
    Step("GET", "/session/s1/state"),
    ("advance", 6),
    Step("GET", "/session/s1/state"),
    Step("GET", "/session/never-seen/state"),
    post("/context", {"session_id": "team/a b", "key": "k", "value": 1}),
    Step("GET", "/session/team%2Fa%20b/state"),
    ("shutdown", None),
    post("/context", {"session_id": "s1", "key": "k", "value": 1}),
    post("/evidence", evidence()),
    Step("GET", "/session/s1/state"),
    Step("GET", "/healthz", headers={}),
]


def _comparable(status: int, headers: dict[str, str], body: Any) -> tuple[int, str | None, Any]:
    if isinstance(body, dict) and "error" in body:
        body = {k: v for k, v in body.items() if k != "error"}  # human text; clients key on `code`
    return status, headers.get("allow"), body


@pytest.fixture
def sides() -> Sides:
    clock = ManualClock()
    config = parse_config_text(CONFIG)
    store = InMemorySessionStore(clock=clock)
    return Sides(
        clock=clock,
        store=store,
        ours=SidebandApp(store, lambda: config, TOKEN),
        fake=FakeSideband(token=TOKEN, allowed_keys=evidence_allowlist(config), clock=clock),
    )


async def test_our_sideband_and_the_fake_give_identical_answers(sides: Sides) -> None:
    compared = 0
    transport = httpx.ASGITransport(app=sides.ours)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3200") as http:
        for step in SEQUENCE:
            if isinstance(step, tuple):
                what, argument = step
                if what == "record_call":
                    await _record_call(sides, *argument)
                elif what == "advance":
                    sides.clock.advance(argument)
                else:
                    sides.ours.begin_shutdown()
                    sides.fake.begin_shutdown()
                continue
            # The same header set on both sides (httpx would add its own user-agent otherwise).
            headers = {"user-agent": "helio-sdk/contract", **step.headers}
            raw = step.raw()
            response = await http.request(step.method, step.path, content=raw, headers=headers)
            ours = _comparable(response.status_code, dict(response.headers), response.json())
            answer = sides.fake(TransportRequest(step.method, "http://fake" + step.path, headers, raw))
            theirs = _comparable(answer.status, dict(answer.headers), json.loads(answer.body))
            assert ours == theirs, f"{step.method} {step.path} {raw[:120]!r}"
            compared += 1
    assert compared == sum(isinstance(step, Step) for step in SEQUENCE)


async def test_our_sdk_works_against_the_real_sideband_on_a_socket() -> None:
    """The SDK (urllib, in worker threads) against ``HelioApp`` serving ``sdk.port: 0``."""
    config = parse_config_text(CONFIG, source="test.yaml")
    loaded = LoadedConfig(config=config, path=Path("test.yaml"), sha256="0" * 64, warnings=[])
    app = HelioApp(loaded, out=io.StringIO(), environ={"HELIO_SDK_TOKEN": TOKEN})
    await app.start()
    try:
        await app.sessions.record_call("run-7", "orders.lookup", "c1", succeeded=True)
        async with HelioContext(app.sideband_url, "run-7", token=TOKEN) as ctx:
            receipt = await ctx.amark_evidence("orders.lookup", "order_data", {"n": 1}, call_id="c1")
            await ctx.aset("tier", "gold")
            await ctx.adeclare_dependency("orders.refund", ["orders.lookup"])
            ctx.require_evidence(["order_data", "refund_policy"])
            report = await ctx.aget_evidence_state()
    finally:
        await app.stop()
    assert receipt.verified is True
    assert report.satisfied == ["order_data"]
    assert report.missing == ["refund_policy"]
    assert report.state.evidence["order_data"].call_id == "c1"
    assert report.state.context == {"tier": "gold"}
    assert [d.tool_name for d in report.state.dependencies] == ["orders.refund"]
    assert ctx.headers == {"x-helio-session-id": "run-7"}
