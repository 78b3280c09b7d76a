"""Sideband routes: each happy path with its response fields, and the field rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.evidence import InMemorySessionStore, StoreLimits
from helio_proxy.sideband import SidebandApp
from tests.unit.evidence.manual_clock import ManualClock
from tests.unit.sideband.conftest import AUTH, CONFIG, TOKEN


def evidence(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": "run-42",
        "tool_name": "orders.lookup",
        "evidence_key": "order_data",
        "evidence_data": {"order_id": 7, "status": "delivered"},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


async def test_evidence_is_201_with_key_expiry_and_verification(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    response = await client.post("/evidence", json=evidence(ttl_seconds=600))
    assert response.status_code == 201
    assert response.json() == {
        "ok": True,
        "evidence_key": "order_data",
        "expires_at": clock.ms + 600_000,
        "verified": False,
    }


async def test_evidence_ttl_defaults_to_300_seconds(client: httpx.AsyncClient, clock: ManualClock) -> None:
    response = await client.post("/evidence", json=evidence())
    assert response.json()["expires_at"] == clock.ms + 300_000


async def test_evidence_with_the_call_id_of_a_succeeded_call_is_verified(
    client: httpx.AsyncClient, store: InMemorySessionStore
) -> None:
    await store.record_call("run-42", "orders.lookup", "c-ok", succeeded=True)
    await store.record_call("run-42", "orders.lookup", "c-failed", succeeded=False)
    await store.record_call("other", "orders.lookup", "c-other", succeeded=True)
    verified = await client.post("/evidence", json=evidence(call_id="c-ok"))
    assert verified.json()["verified"] is True
    for call_id in ("c-failed", "c-other", "c-unknown", None):
        response = await client.post("/evidence", json=evidence(call_id=call_id))
        assert response.status_code == 201
        assert response.json()["verified"] is False, call_id


async def test_evidence_for_a_key_no_rule_requires_is_400_with_the_allowed_keys(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/evidence", json=evidence(evidence_key="ordr_data"))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "evidence_key_not_in_policy_allowlist"
    assert body["key"] == "ordr_data"
    assert body["allowed_keys"] == ["order_data", "refund_policy"]
    assert body["allowed_key_count"] == 2
    assert body["truncated"] is False


async def test_allowed_keys_preview_is_the_first_20_sorted(store: InMemorySessionStore) -> None:
    keys = [f"key_{i:02d}" for i in range(25, 0, -1)]
    config = parse_config_text(CONFIG.replace("[order_data, refund_policy]", "[" + ", ".join(keys) + "]"))
    app = SidebandApp(store, lambda: config, TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
    ) as http:
        body = (await http.post("/evidence", json=evidence(evidence_key="nope"))).json()
    assert body["allowed_keys"] == sorted(keys)[:20]
    assert body["allowed_key_count"] == 25
    assert body["truncated"] is True


async def test_the_allowlist_follows_the_current_config(store: InMemorySessionStore) -> None:
    holder = {"config": parse_config_text(CONFIG)}
    app = SidebandApp(store, lambda: holder["config"], TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
    ) as http:
        assert (await http.post("/evidence", json=evidence())).status_code == 201
        holder["config"] = parse_config_text(CONFIG.replace("order_data, ", ""))
        assert (await http.post("/evidence", json=evidence())).status_code == 400


INVALID_EVIDENCE = [
    (evidence(session_id=...), "session_id"),
    (evidence(session_id=""), "session_id"),
    (evidence(session_id="   "), "session_id"),
    (evidence(session_id="s" * 257), "session_id"),
    (evidence(session_id=42), "session_id"),
    (evidence(tool_name=...), "tool_name"),
    (evidence(tool_name=""), "tool_name"),
    (evidence(tool_name=["x"]), "tool_name"),
    (evidence(evidence_key=...), "evidence_key"),
    (evidence(evidence_key=7), "evidence_key"),
    (evidence(evidence_data=...), "evidence_data"),
    (evidence(ttl_seconds=0), "ttl_seconds"),
    (evidence(ttl_seconds=86_401), "ttl_seconds"),
    (evidence(ttl_seconds=1.5), "ttl_seconds"),
    (evidence(ttl_seconds="60"), "ttl_seconds"),
    (evidence(ttl_seconds=True), "ttl_seconds"),
    (evidence(ttl_seconds=None), "ttl_seconds"),
    (evidence(call_id=""), "call_id"),
    (evidence(call_id=5), "call_id"),
    (evidence(session_id=..., tool_name=...), "session_id"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_EVIDENCE)
async def test_invalid_evidence_fields_are_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/evidence", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["field"] == field


async def test_field_rules_are_checked_before_the_allowlist(client: httpx.AsyncClient) -> None:
    response = await client.post("/evidence", json=evidence(evidence_key="nope", ttl_seconds=0))
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("ttl", [1, 86_400, 60.0])
async def test_ttl_bounds_are_inclusive_and_integral_floats_count(
    client: httpx.AsyncClient, ttl: float
) -> None:
    assert (await client.post("/evidence", json=evidence(ttl_seconds=ttl))).status_code == 201


async def test_null_evidence_data_and_unknown_fields_are_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/evidence", json=evidence(evidence_data=None, future_field=1))
    assert response.status_code == 201


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null"])
async def test_a_body_that_is_not_an_object_is_invalid_request_without_field(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/evidence", content=body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "field" not in response.json()


async def test_context_is_201_and_shows_in_the_state(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/context", json={"session_id": "run-42", "key": "tier", "value": {"a": [1]}}
    )
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    state = (await client.get("/session/run-42/state")).json()
    assert state["context"] == {"tier": {"a": [1]}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "k", "value": 1}, "session_id"),
        ({"session_id": "s", "value": 1}, "key"),
        ({"session_id": "s", "key": "", "value": 1}, "key"),
        ({"session_id": "s", "key": "k"}, "value"),
    ],
)
async def test_invalid_context_fields_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/context", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_dependencies_are_201_and_accumulate_in_the_state(client: httpx.AsyncClient) -> None:
    first = {"session_id": "run-42", "tool_name": "orders.refund", "requires": ["a", "b"]}
    second = {"session_id": "run-42", "tool_name": "orders.refund", "requires": ["c", "b"]}
    assert (await client.post("/dependencies", json=first)).status_code == 201
    response = await client.post("/dependencies", json=second)
    assert response.json() == {"ok": True}
    state = (await client.get("/session/run-42/state")).json()
    assert state["dependencies"] == [{"tool_name": "orders.refund", "requires": ["a", "b", "c"]}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": "s", "requires": ["a"]}, "tool_name"),
        ({"session_id": "s", "tool_name": "t"}, "requires"),
        ({"session_id": "s", "tool_name": "t", "requires": []}, "requires"),
        ({"session_id": "s", "tool_name": "t", "requires": ["a", ""]}, "requires"),
        ({"session_id": "s", "tool_name": "t", "requires": "a"}, "requires"),
        ({"session_id": "s", "tool_name": "t", "requires": [1]}, "requires"),
    ],
)
async def test_invalid_dependency_fields_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/dependencies", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_state_lists_evidence_calls_context_and_dependencies(
    client: httpx.AsyncClient, store: InMemorySessionStore, clock: ManualClock
) -> None:
    await store.record_call("run-42", "orders.lookup", "c1", succeeded=True)
    await client.post("/evidence", json=evidence(call_id="c1", ttl_seconds=60))
    await client.post("/context", json={"session_id": "run-42", "key": "tier", "value": "gold"})
    await client.post("/dependencies", json={"session_id": "run-42", "tool_name": "x", "requires": ["y"]})
    response = await client.get("/session/run-42/state?view=full")
    assert response.status_code == 200
    assert response.json() == {
        "session_id": "run-42",
        "evidence": {
            "order_data": {
                "evidence_key": "order_data",
                "data": {"order_id": 7, "status": "delivered"},
                "tool_name": "orders.lookup",
                "timestamp": clock.ms,
                "expires_at": clock.ms + 60_000,
                "verified": True,
                "call_id": "c1",
            }
        },
        "context": {"tier": "gold"},
        "completed_tools": [
            {"tool_name": "orders.lookup", "timestamp": clock.ms, "succeeded": True, "call_id": "c1"}
        ],
        "dependencies": [{"tool_name": "x", "requires": ["y"]}],
    }


async def test_expired_evidence_is_not_listed(client: httpx.AsyncClient, clock: ManualClock) -> None:
    await client.post("/evidence", json=evidence(ttl_seconds=1))
    clock.advance(1)
    assert (await client.get("/session/run-42/state")).json()["evidence"] == {}


async def test_an_unknown_session_has_an_empty_state(client: httpx.AsyncClient) -> None:
    response = await client.get("/session/never-seen/state")
    assert response.status_code == 200
    assert response.json() == {
        "session_id": "never-seen",
        "evidence": {},
        "context": {},
        "completed_tools": [],
        "dependencies": [],
    }


async def test_a_percent_encoded_session_id_is_one_path_segment(client: httpx.AsyncClient) -> None:
    await client.post("/context", json={"session_id": "team/a b", "key": "k", "value": 1})
    response = await client.get("/session/team%2Fa%20b/state")
    assert response.json()["session_id"] == "team/a b"
    assert response.json()["context"] == {"k": 1}


async def test_a_query_string_does_not_change_the_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/session/s1/state?x=1")).status_code == 200


async def test_without_view_full_entries_keep_the_reference_shape(
    client: httpx.AsyncClient, store: InMemorySessionStore
) -> None:
    """helio-client 0.16 builds its dataclasses with ``Entry(**entry)``: unknown entry fields break it."""
    await store.record_call("run-42", "orders.lookup", "c1", succeeded=True)
    await client.post("/evidence", json=evidence())
    state = (await client.get("/session/run-42/state")).json()
    full = (await client.get("/session/run-42/state?view=full")).json()
    assert full["evidence"]["order_data"]["call_id"] is None
    assert full["completed_tools"][0]["call_id"] == "c1"
    assert set(state["evidence"]["order_data"]) == {
        "evidence_key",
        "data",
        "tool_name",
        "timestamp",
        "expires_at",
    }
    assert set(state["completed_tools"][0]) == {"tool_name", "timestamp", "succeeded"}


async def test_a_full_store_is_503_with_a_stable_code(config: Any) -> None:
    store = InMemorySessionStore(limits=StoreLimits(max_sessions=1))
    app = SidebandApp(store, lambda: config, TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
    ) as http:
        assert (
            await http.post("/context", json={"session_id": "a", "key": "k", "value": 1})
        ).status_code == 201
        response = await http.post("/context", json={"session_id": "b", "key": "k", "value": 1})
    assert response.status_code == 503
    assert response.json()["code"] == "capacity_exhausted"
    assert response.json()["limit"] == "max_sessions"
