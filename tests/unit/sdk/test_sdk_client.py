import dataclasses
import math

import pytest

import helio
from helio import TransportRequest, TransportResponse
from helio.testing import FakeSideband


def test_mark_evidence_posts_the_wire_fields_and_returns_the_receipt(fake: FakeSideband):
    with fake.client() as client:
        receipt = client.mark_evidence("s1", "orders.lookup", "order_data", {"id": 7}, ttl=60)

    assert receipt == helio.EvidenceReceipt("order_data", 1_700_000_060_000, False)
    call = fake.calls[-1]
    assert (call.method, call.path, call.status) == ("POST", "/evidence", 201)
    assert call.json == {
        "session_id": "s1",
        "tool_name": "orders.lookup",
        "evidence_key": "order_data",
        "evidence_data": {"id": 7},
        "ttl_seconds": 60,
    }


def test_mark_evidence_sends_the_call_id_only_when_one_is_given(fake: FakeSideband):
    client = fake.client()
    client.mark_evidence("s1", "orders.lookup", "order_data", 1, call_id="c-9")
    client.mark_evidence("s1", "orders.lookup", "order_data", 1)

    assert fake.calls[0].json["call_id"] == "c-9"
    assert "call_id" not in fake.calls[1].json
    assert fake.calls[1].json["ttl_seconds"] == 300


def test_set_context_posts_key_and_value_for_the_session(fake: FakeSideband):
    fake.client().set_context("s1", "tier", {"level": "gold"})

    assert fake.calls[-1].json == {"session_id": "s1", "key": "tier", "value": {"level": "gold"}}
    assert fake.calls[-1].status == 201
    assert fake.state("s1").context == {"tier": {"level": "gold"}}


def test_declare_dependency_posts_the_required_tools(fake: FakeSideband):
    fake.client().declare_dependency("s1", "orders.refund", ("orders.lookup", "customers.verify"))

    assert fake.calls[-1].json == {
        "session_id": "s1",
        "tool_name": "orders.refund",
        "requires": ["orders.lookup", "customers.verify"],
    }
    assert fake.state("s1").dependencies == [
        helio.DeclaredDependency("orders.refund", ["orders.lookup", "customers.verify"])
    ]


def test_declare_dependency_treats_a_single_string_as_one_tool_name(fake: FakeSideband):
    fake.client().declare_dependency("s1", "orders.refund", "orders.lookup")

    assert fake.calls[-1].json["requires"] == ["orders.lookup"]


def test_get_session_state_returns_the_typed_state_of_the_session(fake: FakeSideband):
    client = fake.client()
    client.mark_evidence("s1", "orders.lookup", "order_data", {"id": 7})
    client.set_context("s1", "tier", "gold")

    state = client.get_session_state("s1")

    assert state.session_id == "s1"
    assert state.evidence["order_data"].data == {"id": 7}
    assert state.evidence["order_data"].timestamp == 1_700_000_000_000
    assert state.context == {"tier": "gold"}
    assert fake.calls[-1].path == "/session/s1/state"


def test_get_session_state_of_an_unknown_session_is_empty_not_an_error(fake: FakeSideband):
    assert fake.client().get_session_state("never-seen") == helio.SessionState("never-seen")


def test_a_session_id_with_reserved_characters_travels_as_one_path_segment(fake: FakeSideband):
    client = fake.client()
    client.set_context("team/a b?c", "k", 1)

    state = client.get_session_state("team/a b?c")

    assert fake.calls[-1].path == "/session/team%2Fa%20b%3Fc/state"
    assert state.session_id == "team/a b?c"
    assert state.context == {"k": 1}


def test_health_is_true_when_the_sideband_answers_ok_without_a_token(fake: FakeSideband):
    assert fake.client(token="").health() is True
    assert fake.calls[-1].status == 200


def test_the_token_argument_is_sent_as_a_bearer_header(fake: FakeSideband):
    fake.client().set_context("s1", "k", 1)

    assert fake.calls[-1].headers["authorization"] == f"Bearer {fake.token}"


def test_the_token_is_read_from_helio_sdk_token_once_at_construction(
    fake: FakeSideband, monkeypatch: pytest.MonkeyPatch
):
    assert fake.token
    monkeypatch.setenv("HELIO_SDK_TOKEN", fake.token)
    client = helio.HelioClient(fake.url, transport=fake)
    monkeypatch.setenv("HELIO_SDK_TOKEN", "rotated-later")

    client.set_context("s1", "k", 1)

    assert fake.calls[-1].status == 201
    assert fake.calls[-1].headers["authorization"] == f"Bearer {fake.token}"


def test_the_token_argument_wins_over_the_environment(fake: FakeSideband, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HELIO_SDK_TOKEN", "from-env")

    helio.HelioClient(fake.url, token=fake.token, transport=fake).set_context("s1", "k", 1)

    assert fake.calls[-1].status == 201


@pytest.mark.parametrize("env_value", [None, ""])
def test_an_unset_or_empty_environment_token_sends_no_authorization_header(
    fake: FakeSideband, monkeypatch: pytest.MonkeyPatch, env_value: str | None
):
    if env_value is not None:
        monkeypatch.setenv("HELIO_SDK_TOKEN", env_value)
    client = helio.HelioClient(fake.url, transport=fake)

    with pytest.raises(helio.HelioAuthError) as caught:
        client.set_context("s1", "k", 1)

    assert "authorization" not in fake.calls[-1].headers
    assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")


def test_an_empty_token_argument_opts_out_of_the_environment_token(
    fake: FakeSideband, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HELIO_SDK_TOKEN", "from-env")

    with pytest.raises(helio.HelioAuthError):
        helio.HelioClient(fake.url, token="", transport=fake).set_context("s1", "k", 1)

    assert "authorization" not in fake.calls[-1].headers


def test_a_wrong_token_raises_an_auth_error_that_never_shows_the_token(fake: FakeSideband):
    client = fake.client(token="s3cret-wrong-token")

    with pytest.raises(helio.HelioAuthError) as caught:
        client.get_session_state("s1")

    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(caught.value)
    assert "s3cret" not in repr(client)


def test_a_token_that_cannot_go_in_a_header_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="token") as caught:
        helio.HelioClient(token="s3cret\r\nx-injected: 1")

    assert "s3cret" not in str(caught.value)


def test_an_evidence_key_outside_the_policy_allowlist_raises_a_validation_error_with_allowed_keys(
    fake: FakeSideband,
):
    with pytest.raises(helio.HelioValidationError) as caught:
        fake.client().mark_evidence("s1", "orders.lookup", "ordr_data", {"id": 7})

    error = caught.value
    assert (error.status_code, error.code) == (400, "evidence_key_not_in_policy_allowlist")
    assert error.key == "ordr_data"
    assert error.allowed_keys == ["customer_verified", "order_data", "refund_policy"]
    assert error.allowed_key_count == 3
    assert error.truncated is False


def test_an_invalid_field_raises_a_validation_error_naming_the_field(fake: FakeSideband):
    with pytest.raises(helio.HelioValidationError) as caught:
        fake.client().mark_evidence("s1", "orders.lookup", "order_data", 1, ttl=0)

    assert (caught.value.code, caught.value.field) == ("invalid_request", "ttl_seconds")


def test_a_body_over_one_mebibyte_raises_payload_too_large(fake: FakeSideband):
    with pytest.raises(helio.HelioPayloadTooLargeError) as caught:
        fake.client().mark_evidence("s1", "orders.lookup", "order_data", "x" * (1 << 20))

    assert (caught.value.status_code, caught.value.code) == (413, "request_body_too_large")


def test_a_request_with_an_origin_header_raises_forbidden(fake: FakeSideband):
    def browser_like(request: TransportRequest) -> TransportResponse:
        return fake(dataclasses.replace(request, headers={**request.headers, "origin": "null"}))

    client = helio.HelioClient(fake.url, token=fake.token, transport=browser_like)

    with pytest.raises(helio.HelioForbiddenError) as caught:
        client.set_context("s1", "k", 1)

    assert (caught.value.status_code, caught.value.code) == (403, "origin_forbidden")


def test_a_write_during_proxy_shutdown_raises_an_http_error_with_the_shutdown_code(fake: FakeSideband):
    fake.begin_shutdown()

    with pytest.raises(helio.HelioHTTPError) as caught:
        fake.client().set_context("s1", "k", 1)

    assert type(caught.value) is helio.HelioHTTPError
    assert (caught.value.status_code, caught.value.code) == (503, "sideband_shutting_down")


@pytest.mark.parametrize("data", [{1, 2}, object(), math.nan, {"nested": math.inf}])
def test_data_that_is_not_json_raises_a_serialization_error_before_anything_is_sent(fake: FakeSideband, data):
    with pytest.raises(helio.HelioSerializationError):
        fake.client().mark_evidence("s1", "orders.lookup", "order_data", data)
    with pytest.raises(helio.HelioSerializationError):
        fake.client().set_context("s1", "k", data)

    assert fake.calls == []


def test_a_success_answer_that_is_not_json_raises_a_protocol_error_with_the_status():
    def broken(request: TransportRequest) -> TransportResponse:
        return TransportResponse(200, {"content-type": "text/html"}, b"<html>hello</html>")

    with pytest.raises(helio.HelioProtocolError) as caught:
        helio.HelioClient(transport=broken).get_session_state("s1")

    assert caught.value.status_code == 200


def test_a_state_answer_of_the_wrong_shape_raises_a_protocol_error():
    def broken(request: TransportRequest) -> TransportResponse:
        return TransportResponse(200, {}, b'{"session_id": "s1", "evidence": []}')

    with pytest.raises(helio.HelioProtocolError):
        helio.HelioClient(transport=broken).get_session_state("s1")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ConnectionRefusedError(111, "refused"), helio.HelioConnectionError),
        (ConnectionResetError(104, "reset"), helio.HelioConnectionError),
        (TimeoutError("timed out"), helio.HelioTimeoutError),
    ],
)
def test_os_errors_from_a_transport_are_mapped_to_connection_and_timeout_errors(raised, expected):
    def failing(request: TransportRequest) -> TransportResponse:
        raise raised

    with pytest.raises(expected) as caught:
        helio.HelioClient(transport=failing).health()

    assert caught.value.__cause__ is raised


def test_a_transport_receives_method_url_headers_body_and_timeout():
    seen: list[TransportRequest] = []

    def recording(request: TransportRequest) -> TransportResponse:
        seen.append(request)
        return TransportResponse(201, {}, b'{"ok": true}')

    client = helio.HelioClient("http://127.0.0.1:3999/", timeout=1.5, token="tkn", transport=recording)
    client.set_context("s1", "k", [1, 2])

    (request,) = seen
    assert (request.method, request.url, request.timeout) == ("POST", "http://127.0.0.1:3999/context", 1.5)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer tkn"
    assert request.headers["user-agent"] == f"helio-sdk/{helio.__version__}"
    assert request.body == b'{"session_id":"s1","key":"k","value":[1,2]}'


def test_a_closed_client_refuses_further_calls(fake: FakeSideband):
    with fake.client() as client:
        client.health()

    with pytest.raises(helio.HelioError):
        client.health()
    client.close()
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"sideband_url": "ftp://127.0.0.1:3200"}, "sideband_url"),
        ({"sideband_url": "127.0.0.1:3200"}, "sideband_url"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_a_client_refuses_a_non_http_url_or_a_non_positive_timeout(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        helio.HelioClient(**kwargs)


def test_the_client_defaults_to_the_local_sideband_port_and_five_seconds():
    client = helio.HelioClient()

    assert (client.sideband_url, client.timeout) == ("http://127.0.0.1:3200", 5.0)
    assert repr(client) == "HelioClient(sideband_url='http://127.0.0.1:3200', timeout=5.0, token=none)"
