import json

import pytest

import helio
from helio._errors import error_from_response


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_every_sdk_error_derives_from_helio_error_as_drawn_in_the_errors_module():
    for name in ("HelioConnectionError", "HelioTimeoutError", "HelioSerializationError"):
        assert issubclass(getattr(helio, name), helio.HelioError)
    assert issubclass(helio.HelioProtocolError, helio.HelioError)
    assert issubclass(helio.HelioHTTPError, helio.HelioError)
    for name in (
        "HelioValidationError",
        "HelioAuthError",
        "HelioForbiddenError",
        "HelioPayloadTooLargeError",
    ):
        assert issubclass(getattr(helio, name), helio.HelioHTTPError)
    assert not issubclass(helio.HelioTimeoutError, helio.HelioConnectionError)


def test_helio_error_keeps_the_status_code_attribute_of_helio_client_0_16():
    assert helio.HelioError("boom").status_code is None
    assert helio.HelioError("boom", status_code=502).status_code == 502
    assert helio.HelioError("boom", 502).status_code == 502


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, helio.HelioValidationError),
        (401, helio.HelioAuthError),
        (403, helio.HelioForbiddenError),
        (413, helio.HelioPayloadTooLargeError),
        (404, helio.HelioNotSidebandError),
        (405, helio.HelioHTTPError),
        (500, helio.HelioHTTPError),
        (503, helio.HelioHTTPError),
    ],
)
def test_an_error_status_maps_to_its_error_class_with_status_and_code(status, error_class):
    error = error_from_response("POST /evidence", status, _body(error="text", code="some_code", extra=1))

    assert type(error) is error_class
    assert error.status_code == status
    assert error.code == "some_code"
    assert error.details == {"error": "text", "code": "some_code", "extra": 1}


def test_an_error_body_without_json_still_gives_the_status_class_without_code():
    error = error_from_response("GET /healthz", 413, b"<html>too big</html>")

    assert isinstance(error, helio.HelioPayloadTooLargeError)
    assert error.code is None
    assert error.details == {}


def test_an_error_body_from_the_typescript_proxy_without_code_is_accepted():
    """The reference proxy answers 401 with just {"error": "Unauthorized"}."""
    error = error_from_response("GET /session/s/state", 401, _body(error="Unauthorized"))

    assert isinstance(error, helio.HelioAuthError)
    assert error.code is None


def test_an_allowlist_rejection_exposes_the_rejected_key_and_the_allowed_keys():
    body = _body(
        error="not allowed",
        code="evidence_key_not_in_policy_allowlist",
        key="ordr_data",
        allowed_keys=["customer_verified", "order_data"],
        allowed_key_count=2,
        truncated=False,
    )
    error = error_from_response("POST /evidence", 400, body)

    assert isinstance(error, helio.HelioValidationError)
    assert error.code == "evidence_key_not_in_policy_allowlist"
    assert error.key == "ordr_data"
    assert error.allowed_keys == ["customer_verified", "order_data"]
    assert error.allowed_key_count == 2
    assert error.truncated is False
    assert error.field is None


def test_an_allowlist_rejection_with_wrongly_typed_details_leaves_them_unset():
    body = _body(code="evidence_key_not_in_policy_allowlist", allowed_keys="x", allowed_key_count=True)
    error = error_from_response("POST /evidence", 400, body)

    assert isinstance(error, helio.HelioValidationError)
    assert error.allowed_keys is None
    assert error.allowed_key_count is None
    assert error.truncated is None


def test_an_invalid_request_rejection_names_the_field_and_has_no_allowlist_details():
    error = error_from_response("POST /context", 400, _body(code="invalid_request", field="session_id"))

    assert isinstance(error, helio.HelioValidationError)
    assert error.field == "session_id"
    assert error.allowed_keys is None
    assert error.key is None
