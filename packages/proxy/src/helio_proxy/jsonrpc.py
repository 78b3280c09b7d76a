"""JSON-RPC 2.0 as MCP uses it: classify incoming messages, build error bodies.

Only what governance needs is parsed; the original bytes are what gets forwarded, so ingress
refuses what two readers could take differently: an object with the same key twice (at any
depth: one JSON parser keeps the last value, another the first) and a ``tools/call`` without an
``id`` (a notification has no answer, so it could never be governed or audited). Both are
``-32600`` with a :attr:`EnvelopeError.reason` that the gateway records as ``rejected``.
So is a message that breaks one of the caps of :mod:`helio_proxy.jsonlimits` (depth, string or
array length), checked on the bytes before they are parsed: reason ``input_limit_exceeded``, with
``limit`` and ``max`` in the detail.

Parsing is orjson's where it gives exactly what the standard library would, and the standard
library's everywhere else (see :func:`_load`): the same values, the same refusals, the same error
messages, about five times faster on a typical ``tools/call``.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any, Final, cast

import orjson

from helio_proxy.jsonlimits import DEFAULT_LIMITS, INPUT_LIMIT_EXCEEDED, InputLimitExceeded, JsonLimits, check
from helio_proxy.values import value

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


@value
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


DUPLICATE_KEY: Final = "duplicate_key"
"""Refusal reason: an object in the message has the same key twice."""

NOTIFICATION_TOOL_CALL: Final = "notification_tool_call"
"""Refusal reason: a ``tools/call`` sent as a notification (no ``id``)."""


class EnvelopeError(ValueError):
    """The body is JSON but not an acceptable JSON-RPC message.

    ``reason`` is set for refusals the audit trail records (:data:`DUPLICATE_KEY`,
    :data:`NOTIFICATION_TOOL_CALL`); ``payload`` is then the message as parsed (for a duplicate
    key, with the last value of each duplicate) and ``detail`` what the record adds.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        request_id: RequestId | None = None,
        reason: str | None = None,
        payload: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.reason = reason
        self.payload = payload
        self.detail = detail


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
        if not has_id and message["method"] == "tools/call":
            raise EnvelopeError(
                'tools/call must be a request with an "id"; a notification cannot be governed or answered',
                reason=NOTIFICATION_TOOL_CALL,
                payload=message,
                detail={"method": "tools/call"},
            )
        return Message(Kind.REQUEST if has_id else Kind.NOTIFICATION, message, raw)
    if has_id and (("result" in message) != ("error" in message)):
        if "error" in message and not isinstance(message["error"], dict):
            raise EnvelopeError('"error" must be an object', request_id=request_id)
        return Message(Kind.RESPONSE, message, raw)
    raise EnvelopeError("not a request, notification or response", request_id=request_id)


class _DuplicateKey(Exception):
    """Raised out of the decoder at the first object with a repeated key."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


class _Duplicated(dict[str, Any]):
    """An object that had :attr:`key` more than once (it holds the last value of each key)."""

    key: str = ""


def _mark_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Duplicated(obj)
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


# One decoder each (``json.loads`` with a hook would build a new one per call). The strict one
# costs ~1 us on a typical tools/call; the marking one only runs once a duplicate was found.
_STRICT: Final = json.JSONDecoder(object_pairs_hook=_refuse_duplicates)
_MARKING: Final = json.JSONDecoder(object_pairs_hook=_mark_duplicates)


_ESCAPED_COLON: Final = re.compile(rb"\\u003[aA]")
"""The escape that spells a colon (``:``) inside a JSON string."""

_LONG_DIGITS: Final = 19
"""Digits in a row from which an integer may lie outside orjson's 64 bits, which it reads as a
float (``-9223372036854775809`` has 19)."""

_NOT_DIGITS: Final = bytes(range(256)).translate(None, b"0123456789")
"""Every byte that is not a digit: deleted by ``bytes.translate`` to count a body's digits."""

_DIGIT_RUNS: Final = bytes(byte if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
"""A ``bytes.translate`` table turning every byte but a digit into a space (runs split apart)."""


def _fast_candidate(raw: bytes) -> bool:
    """Whether orjson can read ``raw`` to exactly what the standard decoder would.

    An object or array (``json.detect_encoding`` then says UTF-8, or orjson refuses the NUL of
    UTF-16) holding no run of 19 digits (an integer past 64 bits, which orjson reads as a float).
    """
    if not raw.startswith((b"{", b"[")):
        return False
    if len(raw.translate(None, _NOT_DIGITS)) < _LONG_DIGITS:
        return True
    # Faster than a regular expression for 19 digits, which tries every digit as a start.
    return max(map(len, raw.translate(_DIGIT_RUNS).split())) < _LONG_DIGITS


_SMALL: Final = 1024
"""Bodies up to this many bytes are read by orjson in :func:`read_json` when it can: no such body
nests past 512 levels (each takes two brackets), within both parsers' depth limits (orjson's
1,024, the standard decoder's recursion limit of about 1,000)."""


def read_json(raw: bytes) -> Any:
    """What ``json.loads(raw)`` gives, or ``None`` where it raises (not JSON, invalid UTF-8, an
    integer over Python's digit limit, nesting past the recursion limit): an upstream's answer.

    A small body (:data:`_SMALL`) that orjson provably reads as the standard decoder would
    (:func:`_fast_candidate`) is read by orjson (a 102-byte answer: 0.4 µs plus 0.3 µs for the
    check, against 1.9 µs); what orjson refuses (``NaN``, lone surrogates, ...) goes to the
    standard decoder, as does every larger body: there the checks cost more than orjson saves
    (a 6 KB answer full of numbers: 25 µs checked against 17 µs by the standard decoder). Both
    keep the last of a repeated key, at the place of its first."""
    if len(raw) <= _SMALL and _fast_candidate(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: not JSON, or a 5,000-digit integer
        return None


def _repeats_no_key(raw: bytes, value: Any) -> bool:
    """Whether ``value``, parsed from ``raw`` by a parser that keeps the last of a repeated key,
    provably had no key twice (``False`` also when that cannot be told cheaply).

    Each object member holds one colon outside strings, and unless the body holds the escape
    ``\\u003a``, every colon inside a parsed string was a colon byte of ``raw``. orjson writes
    colons as they are, so the colons of ``value`` re-encoded (members plus string colons) equal
    the colon bytes of ``raw`` exactly when no member was dropped.
    """
    if b"\\u003" in raw and _ESCAPED_COLON.search(raw) is not None:
        return False
    try:
        return orjson.dumps(value).count(b":") == raw.count(b":")
    except orjson.JSONEncodeError:  # nested past orjson's encoder limit (caps off)
        return False


_UNPARSED: Final = object()


def _load(raw: bytes, limits: JsonLimits | None) -> tuple[Any, bool]:
    """The parsed value, and whether some object in it repeats a key (the value then marks those
    objects as :class:`_Duplicated`). ``limits``: the caps checked first (``None``: none).

    orjson parses first when it reads the body exactly as the standard decoder would
    (:func:`_fast_candidate`; it refuses what that decoder takes beyond RFC 8259: ``NaN``, lone
    surrogates, invalid UTF-8). It keeps the last of a repeated key silently, so a body it
    refuses, or that may repeat a key (:func:`_repeats_no_key`), takes the standard path, which
    gives every error message and the repeated key's path as before. A body orjson took is valid
    UTF-8, so the caps are checked on its bytes as the standard path would.
    """
    value = _UNPARSED
    if _fast_candidate(raw):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = _UNPARSED
    if value is not _UNPARSED:
        if limits is not None:
            try:
                check(raw, limits)
            except InputLimitExceeded as exc:
                raise EnvelopeError(str(exc), reason=INPUT_LIMIT_EXCEEDED, detail=exc.details) from None
        if _repeats_no_key(raw, value):
            return value, False
    try:
        # What json.loads does with bytes: UTF-8, or UTF-16/32 recognised by their first bytes.
        encoding = json.detect_encoding(raw)
        text = raw.decode(encoding, "surrogatepass")
        if limits is not None:
            # The caps read UTF-8 bytes; another encoding is checked as its UTF-8 equivalent.
            check(raw if encoding == "utf-8" else text.encode("utf-8", "surrogatepass"), limits)
        try:
            return _STRICT.decode(text), False
        except _DuplicateKey:
            return _MARKING.decode(text), True
    except InputLimitExceeded as exc:
        raise EnvelopeError(str(exc), reason=INPUT_LIMIT_EXCEEDED, detail=exc.details) from None
    except ValueError as exc:
        # UnicodeDecodeError, JSONDecodeError, and the plain ValueError of an integer literal
        # over Python's digit limit (sys.get_int_max_str_digits(), 4300), which the fuzz suite found.
        raise EnvelopeError(f"parse error: {exc}", code=PARSE_ERROR) from None
    except RecursionError:
        raise EnvelopeError("parse error: nested too deeply", code=PARSE_ERROR) from None


def _duplicate_path(value: Any) -> str | None:
    """The dotted path of the first repeated key in ``value`` (document order), or ``None``."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Duplicated):
            return f"{path}.{item.key}" if path else item.key
        if isinstance(item, dict):
            entries = cast(dict[str, Any], item).items()
            stack.extend((child, f"{path}.{key}" if path else key) for key, child in reversed(entries))
        elif isinstance(item, list):
            children = cast(list[Any], item)
            stack.extend((children[i], f"{path}[{i}]") for i in reversed(range(len(children))))
    return None


def _duplicate_refusal(value: Any, where: str) -> EnvelopeError:
    """The refusal of a message (``value``) whose key at ``where`` is repeated."""
    message = cast(dict[str, Any], value) if isinstance(value, dict) else None
    request_id = None
    if message is not None and where != "id" and _valid_id(message.get("id")):
        request_id = message["id"]
    method = message.get("method") if message is not None else None
    return EnvelopeError(
        f"duplicate key {where!r}: an object may not repeat a key",
        request_id=request_id,
        reason=DUPLICATE_KEY,
        payload=message,
        detail={"duplicate_key": where, "method": method if isinstance(method, str) else None},
    )


def parse(raw: bytes, limits: JsonLimits | None = DEFAULT_LIMITS) -> Message:
    """Parse bytes into a :class:`Message`; malformed JSON raises ``EnvelopeError`` with -32700,
    a body over one of ``limits`` ``EnvelopeError`` with -32600 and reason ``input_limit_exceeded``."""
    value, duplicated = _load(raw, limits)
    if duplicated:
        raise _duplicate_refusal(value, _duplicate_path(value) or "?")
    return classify(value, raw)


MAX_BATCH: Final = 100
"""Most messages one batch may hold."""


def parse_any(
    raw: bytes, limits: JsonLimits | None = DEFAULT_LIMITS
) -> Message | list[Message | EnvelopeError]:
    """One message, or a batch (a JSON array): each element a :class:`Message`, or the
    :class:`EnvelopeError` that element deserves (answered in place, as JSON-RPC 2.0 requires).

    Malformed JSON, a body over one of ``limits``, an empty batch or one over :data:`MAX_BATCH`
    raise ``EnvelopeError``.
    """
    payload, duplicated = _load(raw, limits)
    if not isinstance(payload, list):
        if duplicated:
            raise _duplicate_refusal(payload, _duplicate_path(payload) or "?")
        return classify(payload, raw)
    elements: list[Any] = payload  # pyright: ignore[reportUnknownVariableType]
    if not elements:
        raise EnvelopeError("an empty batch is not a JSON-RPC request")
    if len(elements) > MAX_BATCH:
        raise EnvelopeError(f"a batch may hold at most {MAX_BATCH} messages (got {len(elements)})")
    out: list[Message | EnvelopeError] = []
    request_ids: set[tuple[type, RequestId | None]] = set()
    for element in elements:
        where = _duplicate_path(element) if duplicated else None
        if where is not None:
            out.append(_duplicate_refusal(element, where))
            continue
        encoded = json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            message = classify(element, encoded)
        except EnvelopeError as exc:
            out.append(exc)
            continue
        if message.kind is Kind.REQUEST:
            # Two requests with one id cannot both be answered so that the client (or the
            # upstream) tells the answers apart; the fuzz suite found the upstream then waits
            # for the second until its timeout. The later one is refused in place.
            key = (type(message.id), message.id)
            if key in request_ids:
                out.append(
                    EnvelopeError("a batch may not hold two requests with one id", request_id=message.id)
                )
                continue
            request_ids.add(key)
        out.append(message)
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


_MAY_DIFFER: Final = re.compile(rb"[:,\[](?:null|-?\d+(?:\.\d+)?[eE]|-?0\.0000)")
"""Where orjson's output can differ from the standard encoder's: ``null`` (orjson writes NaN and
infinities as ``null``), and floats the standard encoder writes with an exponent (``1e-05``,
``1e+16``; orjson writes ``0.00001``, ``1e16``). Anywhere else, for the types JSON parsing gives,
the two agree byte for byte (strings over every code point, integers, other floats, key order).
Only a value's start counts (after ``:``, ``,`` or ``[``: orjson writes no spaces; a payload that
is not an object or array takes the standard encoder), so text inside strings, such as a hex
call id like ``"4e7f..."``, keeps the fast path; a string holding ``:null`` only costs the slower
encoder."""

_CONTAINERS: Final = (b"{", b"[")

_ORJSON_STRICT: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
"""Dataclasses and datetimes are refused, as the standard encoder refuses them."""


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes, as the proxy writes its own messages.

    The standard encoder's output (``separators=(",", ":")``, ``ensure_ascii=False``), made by
    orjson (several times faster) when its output cannot differ (:data:`_MAY_DIFFER`), and by the
    standard encoder otherwise: integers over 64 bits, non-string keys, lone surrogates, NaN.
    """
    try:
        out = orjson.dumps(payload, option=_ORJSON_STRICT)
    except TypeError:  # orjson.JSONEncodeError included
        out = None
    if out is not None and out[:1] in _CONTAINERS and _MAY_DIFFER.search(out) is None:
        return out
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
