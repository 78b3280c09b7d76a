"""The fake answers exactly as docs/sideband-api.md says the proxy's sideband does."""

import json
from typing import Any

import pytest

import helio
from helio import TransportRequest
from helio.testing import FakeSideband, ManualClock, RecordedCall

MIB = 1 << 20
EVIDENCE = {
    "session_id": "s1",
    "tool_name": "orders.lookup",
    "evidence_key": "order_data",
    "evidence_data": {},
}


def send(
    fake: FakeSideband,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    authorized: bool = True,
) -> tuple[int, dict[str, Any]]:
    sent = {"authorization": f"Bearer {fake.token}"} if authorized and fake.token else {}
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = fake(TransportRequest(method, fake.url + path, {**sent, **(headers or {})}, payload))
    assert response.headers["content-type"] == "application/json"
    return response.status, json.loads(response.body)


def test_healthz_answers_ok_without_a_token(fake: FakeSideband):
    assert send(fake, "GET", "/healthz", authorized=False) == (200, {"status": "ok"})


def test_a_stored_evidence_answer_carries_key_expiry_and_verification(fake: FakeSideband):
    status, body = send(fake, "POST", "/evidence", {**EVIDENCE, "ttl_seconds": 10})

    assert status == 201
    assert body == {
        "ok": True,
        "evidence_key": "order_data",
        "expires_at": 1_700_000_010_000,
        "verified": False,
    }


def test_context_and_dependency_writes_answer_201_ok(fake: FakeSideband):
    assert send(fake, "POST", "/context", {"session_id": "s1", "key": "k", "value": None}) == (
        201,
        {"ok": True},
    )
    dependency = {"session_id": "s1", "tool_name": "b", "requires": ["a"]}
    assert send(fake, "POST", "/dependencies", dependency) == (201, {"ok": True})


def test_the_state_of_an_unknown_session_is_an_empty_200_with_every_field():
    status, body = send(FakeSideband(), "GET", "/session/nobody/state")

    assert status == 200
    assert body == {
        "session_id": "nobody",
        "evidence": {},
        "context": {},
        "completed_tools": [],
        "dependencies": [],
    }


def test_the_state_lists_evidence_context_completed_tools_and_dependencies_in_wire_shape(fake: FakeSideband):
    call_id = fake.record_tool_call("s1", "orders.lookup", call_id="call-1")
    send(fake, "POST", "/evidence", {**EVIDENCE, "call_id": call_id})
    send(fake, "POST", "/context", {"session_id": "s1", "key": "tier", "value": "gold"})
    send(fake, "POST", "/dependencies", {"session_id": "s1", "tool_name": "orders.refund", "requires": ["x"]})

    status, body = send(fake, "GET", "/session/s1/state?view=full")

    assert status == 200
    assert body == {
        "session_id": "s1",
        "evidence": {
            "order_data": {
                "evidence_key": "order_data",
                "data": {},
                "tool_name": "orders.lookup",
                "timestamp": 1_700_000_000_000,
                "expires_at": 1_700_000_300_000,
                "verified": True,
                "call_id": "call-1",
            }
        },
        "context": {"tier": "gold"},
        "completed_tools": [
            {
                "tool_name": "orders.lookup",
                "timestamp": 1_700_000_000_000,
                "succeeded": True,
                "call_id": "call-1",
            }
        ],
        "dependencies": [{"tool_name": "orders.refund", "requires": ["x"]}],
    }


def test_expired_evidence_disappears_from_the_state_exactly_at_its_expiry(
    fake: FakeSideband, clock: ManualClock
):
    send(fake, "POST", "/evidence", {**EVIDENCE, "ttl_seconds": 1})

    clock.advance(0.999)
    assert "order_data" in fake.state("s1").evidence
    clock.advance(0.001)
    assert fake.state("s1").evidence == {}


def test_marking_the_same_key_again_replaces_the_evidence_and_its_expiry(
    fake: FakeSideband, clock: ManualClock
):
    send(fake, "POST", "/evidence", {**EVIDENCE, "evidence_data": 1, "ttl_seconds": 10})
    clock.advance(5)
    send(fake, "POST", "/evidence", {**EVIDENCE, "evidence_data": 2, "ttl_seconds": 10})

    entry = fake.state("s1").evidence["order_data"]
    assert (entry.data, entry.expires_at) == (2, 1_700_000_015_000)


@pytest.mark.parametrize(
    ("call_session", "call_tool", "succeeded", "verified"),
    [
        ("s1", "orders.lookup", True, True),
        ("s1", "orders.lookup", False, False),
        ("s1", "orders.search", True, False),
        ("s2", "orders.lookup", True, False),
    ],
)
def test_evidence_is_verified_only_for_a_successful_call_of_the_same_tool_in_the_same_session(
    fake: FakeSideband, call_session, call_tool, succeeded, verified
):
    call_id = fake.record_tool_call(call_session, call_tool, succeeded=succeeded)

    status, body = send(fake, "POST", "/evidence", {**EVIDENCE, "call_id": call_id})

    assert (status, body["verified"]) == (201, verified)
    assert fake.state("s1").evidence["order_data"].verified is verified


def test_a_call_id_the_proxy_never_forwarded_is_stored_but_not_verified(fake: FakeSideband):
    _, body = send(fake, "POST", "/evidence", {**EVIDENCE, "call_id": "made-up"})

    assert body["verified"] is False
    assert fake.state("s1").evidence["order_data"].call_id == "made-up"


def test_repeated_dependency_declarations_for_a_tool_add_up_without_duplicates(fake: FakeSideband):
    send(
        fake,
        "POST",
        "/dependencies",
        {"session_id": "s1", "tool_name": "refund", "requires": ["a", "b", "a"]},
    )
    send(fake, "POST", "/dependencies", {"session_id": "s1", "tool_name": "refund", "requires": ["c", "b"]})

    assert fake.state("s1").dependencies == [helio.DeclaredDependency("refund", ["a", "b", "c"])]


def test_a_key_outside_the_allowlist_is_refused_with_a_sorted_preview_of_twenty_keys(clock: ManualClock):
    keys = [f"key_{n:02d}" for n in range(25, 0, -1)]
    fake = FakeSideband(allowed_keys=keys, clock=clock)

    status, body = send(fake, "POST", "/evidence", {**EVIDENCE, "evidence_key": "nope"})

    assert status == 400
    assert body["code"] == "evidence_key_not_in_policy_allowlist"
    assert body["key"] == "nope"
    assert body["allowed_keys"] == [f"key_{n:02d}" for n in range(1, 21)]
    assert (body["allowed_key_count"], body["truncated"]) == (25, True)
    assert fake.state("s1").evidence == {}


def test_without_an_allowlist_any_evidence_key_is_accepted():
    assert send(FakeSideband(), "POST", "/evidence", {**EVIDENCE, "evidence_key": "anything"})[0] == 201


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/evidence", {**EVIDENCE, "session_id": ""}, "session_id"),
        ("/evidence", {**EVIDENCE, "session_id": " \t "}, "session_id"),
        ("/evidence", {**EVIDENCE, "session_id": "x" * 257}, "session_id"),
        ("/evidence", {**EVIDENCE, "session_id": 7}, "session_id"),
        ("/evidence", {k: v for k, v in EVIDENCE.items() if k != "tool_name"}, "tool_name"),
        ("/evidence", {**EVIDENCE, "evidence_key": ["order_data"]}, "evidence_key"),
        ("/evidence", {k: v for k, v in EVIDENCE.items() if k != "evidence_data"}, "evidence_data"),
        ("/evidence", {**EVIDENCE, "ttl_seconds": 0}, "ttl_seconds"),
        ("/evidence", {**EVIDENCE, "ttl_seconds": 86_401}, "ttl_seconds"),
        ("/evidence", {**EVIDENCE, "ttl_seconds": "300"}, "ttl_seconds"),
        ("/evidence", {**EVIDENCE, "ttl_seconds": True}, "ttl_seconds"),
        ("/evidence", {**EVIDENCE, "ttl_seconds": 1.5}, "ttl_seconds"),
        ("/evidence", {**EVIDENCE, "call_id": ""}, "call_id"),
        ("/context", {"session_id": "s1", "value": 1}, "key"),
        ("/context", {"session_id": "s1", "key": "k"}, "value"),
        ("/context", {"key": "k", "value": 1}, "session_id"),
        ("/dependencies", {"session_id": "s1", "requires": ["a"]}, "tool_name"),
        ("/dependencies", {"session_id": "s1", "tool_name": "b", "requires": []}, "requires"),
        ("/dependencies", {"session_id": "s1", "tool_name": "b", "requires": [""]}, "requires"),
        ("/dependencies", {"session_id": "s1", "tool_name": "b", "requires": "a"}, "requires"),
    ],
)
def test_a_missing_or_wrongly_typed_field_is_refused_as_invalid_request_naming_it(fake, route, body, field):
    status, answer = send(fake, "POST", route, body)

    assert status == 400
    assert (answer["code"], answer["field"]) == ("invalid_request", field)


@pytest.mark.parametrize(
    "fields", [{"session_id": "x" * 256}, {"ttl_seconds": 1}, {"ttl_seconds": 86_400}, {"ttl_seconds": 60.0}]
)
def test_values_at_the_edges_of_the_limits_are_accepted(fake: FakeSideband, fields):
    assert send(fake, "POST", "/evidence", {**EVIDENCE, **fields})[0] == 201


def test_a_json_body_that_is_not_an_object_is_an_invalid_request(fake: FakeSideband):
    status, body = send(fake, "POST", "/context", ["session_id", "s1"])

    assert (status, body["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("raw", [b"", b"{", b'{"session_id": NaN}', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_refused_as_invalid_json(fake: FakeSideband, raw):
    status, body = send(fake, "POST", "/context", raw=raw)

    assert (status, body["code"]) == (400, "invalid_json")


def test_a_body_of_exactly_one_mebibyte_is_read_and_one_byte_more_is_refused(fake: FakeSideband):
    head = json.dumps({"session_id": "s1", "key": "k", "value": 1}).encode()
    exactly = head + b" " * (MIB - len(head))

    assert send(fake, "POST", "/context", raw=exactly)[0] == 201
    status, body = send(fake, "POST", "/context", raw=exactly + b" ")
    assert (status, body["code"]) == (413, "request_body_too_large")


@pytest.mark.parametrize("origin", ["null", "http://evil.example", ""])
def test_any_origin_header_is_forbidden_even_on_healthz(fake: FakeSideband, origin):
    status, body = send(fake, "GET", "/healthz", headers={"Origin": origin})

    assert (status, body["code"]) == (403, "origin_forbidden")


def test_options_requests_are_forbidden(fake: FakeSideband):
    status, body = send(fake, "OPTIONS", "/evidence")

    assert (status, body["code"]) == (403, "method_forbidden")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {'x'}", "Bearer", "bearer  test-sideband-token-but-longer"],
)
def test_a_missing_or_wrong_bearer_token_is_unauthorized(fake: FakeSideband, authorization):
    headers = {} if authorization is None else {"authorization": authorization}

    status, body = send(fake, "GET", "/session/s1/state", headers=headers, authorized=False)

    assert (status, body["code"]) == (401, "unauthorized")


def test_the_bearer_scheme_is_case_insensitive(fake: FakeSideband):
    status, _ = send(fake, "GET", "/session/s1/state", headers={"authorization": f"bearer {fake.token}"})

    assert status == 200


@pytest.mark.parametrize("path", ["/", "/evidence/", "/session/s1", "/session//state", "/api/evidence/s1"])
def test_an_unknown_route_is_not_found(fake: FakeSideband, path):
    status, body = send(fake, "GET", path)

    assert (status, body["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/evidence", "POST"),
        ("PUT", "/context", "POST"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/session/s1/state", "GET"),
    ],
)
def test_a_wrong_method_on_a_known_route_is_not_allowed(fake: FakeSideband, method, path, allow):
    response = fake(TransportRequest(method, fake.url + path, {"authorization": f"Bearer {fake.token}"}))

    assert response.status == 405
    assert json.loads(response.body)["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


def test_during_shutdown_writes_are_refused_and_reads_still_answer(fake: FakeSideband):
    fake.begin_shutdown()

    status, body = send(fake, "POST", "/evidence", EVIDENCE)
    assert (status, body["code"]) == (503, "sideband_shutting_down")
    assert send(fake, "GET", "/session/s1/state")[0] == 200
    assert send(fake, "GET", "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("method", "headers", "raw", "authorized", "path", "expected"),
    [
        ("OPTIONS", {"origin": "null"}, b"x" * (MIB + 1), False, "/nope", (403, "origin_forbidden")),
        ("OPTIONS", {}, b"x" * (MIB + 1), False, "/nope", (403, "method_forbidden")),
        ("POST", {}, b"x" * (MIB + 1), False, "/nope", (413, "request_body_too_large")),
        ("POST", {}, b"{", False, "/nope", (401, "unauthorized")),
        ("POST", {}, b"{", True, "/nope", (400, "invalid_json")),
        ("POST", {}, b"{}", True, "/nope", (404, "not_found")),
        ("GET", {}, b"", True, "/evidence", (405, "method_not_allowed")),
    ],
)
def test_the_guards_apply_in_the_documented_order(
    fake: FakeSideband, method, headers, raw, authorized, path, expected
):
    status, body = send(fake, method, path, raw=raw, headers=headers, authorized=authorized)

    assert (status, body["code"]) == expected


def test_shutdown_is_checked_after_routing_and_before_field_validation(fake: FakeSideband):
    fake.begin_shutdown()

    assert send(fake, "POST", "/nope", {})[1]["code"] == "not_found"
    assert send(fake, "POST", "/evidence", {"session_id": ""})[1]["code"] == "sideband_shutting_down"


def test_every_error_body_has_human_text_and_a_stable_code(fake: FakeSideband):
    for method, path in [("GET", "/nope"), ("GET", "/evidence"), ("POST", "/evidence")]:
        _, body = send(fake, method, path, raw=b"{}")
        assert isinstance(body["error"], str)
        assert isinstance(body["code"], str)


def test_every_answered_request_is_recorded_with_method_path_headers_body_and_status(fake: FakeSideband):
    send(fake, "POST", "/context", {"session_id": "s1", "key": "k", "value": 1}, headers={"X-Trace": "t1"})
    send(fake, "GET", "/session/s1/state", authorized=False)
    send(fake, "POST", "/context", raw=b"{")

    first, second, third = fake.calls
    assert first == RecordedCall(
        method="POST",
        path="/context",
        headers={"authorization": f"Bearer {fake.token}", "x-trace": "t1"},
        json={"session_id": "s1", "key": "k", "value": 1},
        status=201,
        response={"ok": True},
    )
    assert (second.path, second.status, second.json, second.response["code"]) == (
        "/session/s1/state",
        401,
        None,
        "unauthorized",
    )
    assert (third.status, third.json) == (400, None)


def test_recorded_calls_are_a_snapshot_and_can_be_cleared_while_state_stays(fake: FakeSideband):
    send(fake, "POST", "/context", {"session_id": "s1", "key": "k", "value": 1})
    snapshot = fake.calls
    snapshot.clear()

    assert len(fake.calls) == 1
    fake.clear_calls()
    assert fake.calls == []
    assert fake.state("s1").context == {"k": 1}


def test_state_and_record_tool_call_helpers_record_no_sideband_calls(fake: FakeSideband):
    call_id = fake.record_tool_call("s1", "orders.lookup", succeeded=False)

    assert fake.state("s1").completed_tools == [
        helio.CompletedTool("orders.lookup", 1_700_000_000_000, False, call_id)
    ]
    assert fake.calls == []


def test_a_fake_without_a_token_runs_open_and_its_helpers_send_none():
    fake = FakeSideband()

    fake.client().set_context("s1", "k", 1)

    assert fake.token is None
    assert "authorization" not in fake.calls[-1].headers
    assert fake.calls[-1].status == 201


def test_without_view_full_the_state_entries_keep_the_reference_shape(fake: FakeSideband):
    """The reference SDK ``helio-client`` 0.16 rejects entries with fields it does not know."""
    call_id = fake.record_tool_call("s1", "orders.lookup")
    fake.client().mark_evidence("s1", "orders.lookup", "order_data", {"id": 1}, call_id=call_id)
    _, plain = send(fake, "GET", "/session/s1/state")
    _, full = send(fake, "GET", "/session/s1/state?view=full")
    assert set(plain["evidence"]["order_data"]) == {
        "evidence_key",
        "data",
        "tool_name",
        "timestamp",
        "expires_at",
    }
    assert set(plain["completed_tools"][0]) == {"tool_name", "timestamp", "succeeded"}
    assert full["evidence"]["order_data"]["verified"] is True
    assert full["completed_tools"][0]["call_id"] == call_id
