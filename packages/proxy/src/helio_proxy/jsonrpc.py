"""JSON-RPC 2.0 as MCP uses it: classify incoming messages, build error bodies.

Only what governance needs is parsed; the original bytes are what gets forwarded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
POLICY_BLOCKED: Final = -32001
"""Every governance denial (the reference's code; clients key on ``data.blocked`` and ``data.reason``)."""
HEADER_MISMATCH: Final = -32020

RequestId = str | int


class Kind(Enum):
    """What an incoming JSON-RPC message is."""

    REQUEST = "request"  # method + id: expects exactly one response
    NOTIFICATION = "notification"  # method, no id: fire and forget
    RESPONSE = "response"  # id + result|error: a client's answer to a server request


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed JSON-RPC message and the bytes it came from."""

    kind: Kind
    payload: dict[str, Any]
    raw: bytes

    @property
    def id(self) -> RequestId | None:
        return self.payload.get("id")

    @property
    def method(self) -> str | None:
        return self.payload.get("method")

    @property
    def params(self) -> dict[str, Any] | None:
        params = self.payload.get("params")
        return params if isinstance(params, dict) else None  # pyright: ignore[reportUnknownVariableType]


class EnvelopeError(ValueError):
    """The body is JSON but not an acceptable JSON-RPC message."""

    def __init__(self, message: str, *, code: int = INVALID_REQUEST, request_id: RequestId | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def classify(payload: Any, raw: bytes) -> Message:
    """Validate one JSON-RPC envelope; raise :class:`EnvelopeError` if it is not one."""
    if isinstance(payload, list):
        raise EnvelopeError("batch requests are not supported")
    if not isinstance(payload, dict):
        raise EnvelopeError("a JSON-RPC message must be a JSON object")
    message: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType]
    request_id = message.get("id") if _valid_id(message.get("id")) else None
    if message.get("jsonrpc") != "2.0":
        raise EnvelopeError('"jsonrpc" must be "2.0"', request_id=request_id)
    has_id = "id" in message
    if has_id and not _valid_id(message["id"]):
        raise EnvelopeError('"id" must be a string or an integer')
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise EnvelopeError('"method" must be a non-empty string', request_id=request_id)
        if "params" in message and not isinstance(message["params"], dict | list):
            raise EnvelopeError('"params" must be an object or an array', request_id=request_id)
        if "result" in message or "error" in message:
            raise EnvelopeError("a request cannot carry result or error", request_id=request_id)
        return Message(Kind.REQUEST if has_id else Kind.NOTIFICATION, message, raw)
    if has_id and (("result" in message) != ("error" in message)):
        if "error" in message and not isinstance(message["error"], dict):
            raise EnvelopeError('"error" must be an object', request_id=request_id)
        return Message(Kind.RESPONSE, message, raw)
    raise EnvelopeError("not a request, notification or response", request_id=request_id)


def _load(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"parse error: {exc}", code=PARSE_ERROR) from None


def parse(raw: bytes) -> Message:
    """Parse bytes into a :class:`Message`; malformed JSON raises ``EnvelopeError`` with -32700."""
    return classify(_load(raw), raw)


MAX_BATCH: Final = 100
"""Most messages one batch may hold."""


def parse_any(raw: bytes) -> Message | list[Message | EnvelopeError]:
    """One message, or a batch (a JSON array): each element a :class:`Message`, or the
    :class:`EnvelopeError` that element deserves (answered in place, as JSON-RPC 2.0 requires).

    Malformed JSON, an empty batch or one over :data:`MAX_BATCH` raise ``EnvelopeError``.
    """
    payload = _load(raw)
    if not isinstance(payload, list):
        return classify(payload, raw)
    elements: list[Any] = payload  # pyright: ignore[reportUnknownVariableType]
    if not elements:
        raise EnvelopeError("an empty batch is not a JSON-RPC request")
    if len(elements) > MAX_BATCH:
        raise EnvelopeError(f"a batch may hold at most {MAX_BATCH} messages (got {len(elements)})")
    out: list[Message | EnvelopeError] = []
    for element in elements:
        encoded = json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            out.append(classify(element, encoded))
        except EnvelopeError as exc:
            out.append(exc)
    return out


def error_payload(
    request_id: RequestId | None, code: int, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-RPC error response; ``id`` is left out when none could be read."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    if request_id is not None:
        body["id"] = request_id
    body["error"] = error
    return body


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes, as the proxy writes its own messages."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def is_response_for(payload: Any, request_id: RequestId) -> bool:
    """Whether ``payload`` is a JSON-RPC response (result or error) to ``request_id``."""
    if not isinstance(payload, dict):
        return False
    message: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType]
    response_id = message.get("id")
    return (
        response_id == request_id
        and type(response_id) is type(request_id)
        and ("result" in message or "error" in message)
        and "method" not in message
    )


def is_jsonrpc_error_payload(payload: Any) -> bool:
    """Whether ``payload`` is a JSON-RPC 2.0 error response (with or without an id)."""
    if not isinstance(payload, dict):
        return False
    message: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType]
    return message.get("jsonrpc") == "2.0" and isinstance(message.get("error"), dict)
