"""Turning a record into the row that is stored (scrubbed, serialized) and a row back into values.

The conversion runs on the store's writer thread, never on the event loop. Object fields become
JSON text, serialized once: the text that is stored is the text that is hashed.
"""

from __future__ import annotations

import json
import operator
import re
import uuid
from _json import make_encoder
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Final, cast, get_args

import orjson

from helio_proxy.audit.records import AnyRecord, AuditRecord, response_summary
from helio_proxy.audit.redact import MAX_DEPTH, Redactor
from helio_proxy.store.base import time_text
from helio_proxy.store.tables import AUDIT_RECORDS

COLUMNS: Final = tuple(str(column.name) for column in AUDIT_RECORDS.columns)
"""Every column of ``audit_records``, in table order (plain ``str``, where SQLAlchemy quotes some)."""

CHAIN_COLUMNS: Final = ("seq", "prev_hash", "hash", "signature")
"""Set when the record is appended to the chain, not by the record itself."""

JSON_COLUMNS: Final = frozenset(
    {"tool_input", "evidence_chain", "upstream_response", "upstream_error", "metadata"}
)
"""Columns holding JSON text; they are scrubbed before serialization."""

BOOLEAN_COLUMNS: Final = frozenset({"flagged_destructive", "dry_run", "success"})
MILLISECOND_COLUMNS: Final = frozenset(
    {"upstream_latency_ms", "total_duration_ms", "approval_wait_ms", "proxy_compute_ms"}
)
_RECORD_COLUMNS: Final = frozenset(COLUMNS) - {"created_at", *CHAIN_COLUMNS}
_JSON_COLUMN_ORDER: Final = tuple(sorted(JSON_COLUMNS))
_TEXT_COLUMNS: Final = tuple(
    sorted(
        _RECORD_COLUMNS
        - JSON_COLUMNS
        - BOOLEAN_COLUMNS
        - MILLISECOND_COLUMNS
        - {"id", "timestamp", "upstream_http_status", "matched_rule_index"}
    )
)
"""Plain text columns, cleaned of what databases refuse."""
_BLANK_ROW: Final[dict[str, Any]] = dict.fromkeys(_RECORD_COLUMNS)


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dump_json(value: Any) -> str:
    """Compact JSON text as stored (non-ASCII kept; values JSON cannot hold become strings)."""
    return _ENCODER.encode(value)


_ACYCLIC_ENCODE: Final = make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
"""What :data:`_ENCODER` runs for each value (the same C encoder, with the same settings), built
once; without its check for cycles, so only for values known to have none."""

_PLAIN_VALUES: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


_STRING_LITERAL: Final = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_INNERMOST: Final = re.compile(r"[\[{][^\[\]{}]*+[\]}]")


def _nesting_within(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` nests arrays and objects at most ``limit`` deep."""
    if text.count("{") + text.count("[") <= limit:  # brackets in strings count too: a bound
        return True
    skeleton = _STRING_LITERAL.sub("", text)
    for _ in range(limit):  # each pass removes the arrays and objects that hold no other
        skeleton, removed = _INNERMOST.subn("", skeleton)
        if not removed:
            return True
    return "{" not in skeleton and "[" not in skeleton


def clean_text(value: str) -> str:
    """Text every database accepts: no NUL characters, no lone surrogates."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


class RowBuilder:
    """Builds ``audit_records`` rows from records under one redaction and response policy."""

    def __init__(self, redactor: Redactor, *, include_responses: bool = True) -> None:
        self.redactor = redactor
        self.include_responses = include_responses

    def build(self, record: AnyRecord, created_at: str) -> dict[str, Any]:
        """The row for ``record`` (without its chain columns)."""
        return self.build_fields(record.__dict__, created_at)  # a pydantic model's field values

    def build_fields(self, fields: Mapping[str, Any], created_at: str) -> dict[str, Any]:
        """The row for a record given as its field values (:func:`record_fields`, or a model's
        ``__dict__``)."""
        values: dict[str, Any] = _BLANK_ROW.copy()
        if fields.keys() <= _RECORD_COLUMNS:
            values.update(fields)
        else:
            extra: dict[str, Any] = {}
            for name, value in fields.items():
                if name in _RECORD_COLUMNS:
                    values[name] = value
                else:
                    extra[name] = value
            values["metadata"] = {**extra, **(fields.get("metadata") or {})}
        if fields["record_kind"] == "tool_call" and not self.include_responses:
            values["upstream_response"] = (
                response_summary(fields["upstream_response"]) if fields["success"] is not None else None
            )
        values["id"] = str(fields["id"])
        timestamp = fields["timestamp"]
        values["timestamp"] = timestamp if timestamp.__class__ is str else time_text(timestamp)
        values["created_at"] = created_at
        plain: dict[str, str] = {}  # JSON columns that may need no scrub: their orjson text
        for name in _JSON_COLUMN_ORDER:
            value = values[name]
            if value is not None:
                draft = _plain_draft(value)
                if draft is None:
                    values[name] = self._scrubbed_json(value)
                else:
                    plain[name] = draft
        if plain:
            # One search over all the texts: no match in the whole, none in any part.
            suspect = self.redactor.may_redact("\n".join(plain.values()))
            for name, draft in plain.items():
                values[name] = self._json_text(values[name], draft, suspect=suspect)
        for name in _TEXT_COLUMNS:
            value = values[name]
            # clean_text(str(value)), skipping the calls for the usual ASCII string without NUL
            if value is not None and not (value.__class__ is str and value.isascii() and "\x00" not in value):
                values[name] = clean_text(str(value))
        for name in MILLISECOND_COLUMNS:
            value = values[name]
            if value is not None:
                values[name] = round(float(value), 3)
        values["flagged_destructive"] = bool(values["flagged_destructive"])
        values["dry_run"] = bool(values["dry_run"])
        if values["success"] is not None:
            values["success"] = bool(values["success"])
        return values

    def json_text(self, value: Any) -> str:
        """``clean_text(dump_json(redactor.scrub(value)))``: a JSON column's stored text.

        The scrub walks the value in Python; it is skipped when it provably returns an equal value:
        the value holds only what JSON has (plain dicts with string keys, lists, tuples, strings,
        64-bit integers, floats, booleans, ``None``: orjson accepts it with subclasses and
        datetimes refused; also UUIDs and enums, whose scrubbed string is the text ``str`` gives
        them here too) and nests less deep than the scrub's limit, and its text shows no key
        pattern and no card-like digits (:meth:`Redactor.may_redact`, asked of orjson's text, and
        of the standard encoder's where the two differ). The text is then the one serializing
        the scrubbed copy would give, and the standard encoder writes it as it always did.
        """
        draft = _plain_draft(value)
        if draft is None:
            return self._scrubbed_json(value)
        return self._json_text(value, draft, suspect=True)

    def _json_text(self, value: Any, draft: str, *, suspect: bool) -> str:
        """The stored text of a value whose :func:`_plain_draft` is ``draft``; ``suspect`` is
        false when :meth:`Redactor.may_redact` already said no for a text holding ``draft``."""
        redactor = self.redactor
        if suspect and redactor.may_redact(draft):
            return self._scrubbed_json(value)
        text = "".join(_ACYCLIC_ENCODE(value, 0))
        # orjson writes what the walk sees as the standard encoder does, but for an enum member
        # (its value, where the walk sees str()) and floats: where the texts differ, ask again.
        if text != draft and redactor.may_redact(text):
            return self._scrubbed_json(value)
        return clean_text(text)

    def _scrubbed_json(self, value: Any) -> str:
        # The scrubbed copy is new lists and dicts down to MAX_DEPTH: no cycles to check for.
        return clean_text("".join(_ACYCLIC_ENCODE(self.redactor.scrub(value), 0)))


_Values = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _layout(kind: type[AuditRecord]) -> tuple[str, _Values, tuple[str, ...]]:
    names = tuple(name for name in kind.model_fields if name not in ("id", "timestamp"))
    return kind.model_fields["record_kind"].default, cast(_Values, operator.itemgetter(*names)), names


_LAYOUTS: Final = {kind: _layout(kind) for kind in get_args(AnyRecord)}
"""Per record class: its ``record_kind``, and the getter and names of its other fields, in order."""
_NAMES: Final = {kind: names for kind, _, names in _LAYOUTS.values()}


def packed_record(record: AnyRecord) -> tuple[Any, ...]:
    """A record as the audit writer process is sent it: its kind, its id as the 128-bit integer,
    its timestamp as UTC fields (ints), and its other field values in the class's field order.
    :func:`unpacked_fields` makes them the field values again, with the id and timestamp as the
    text their columns hold, in the child.

    Pickled, a record's ``__dict__`` took 4.4 µs, and formatting its id and time 5.5 µs more (on
    the loop, after the reply); this takes about 2 µs to build and pickle."""
    kind, values, _ = _LAYOUTS[record.__class__]
    moment = record.timestamp
    if moment.tzinfo is not None and moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)  # naive: taken as UTC, as time_text takes it
    return (
        kind,
        record.id.int,
        (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
        ),
        values(record.__dict__),
    )


def unpacked_fields(packed: tuple[Any, ...]) -> dict[str, Any]:
    """:func:`packed_record`'s values as a record's field values, the id and timestamp as text."""
    kind, id_int, moment, values = packed
    fields = dict(zip(_NAMES[kind], values, strict=True))
    fields["id"] = str(uuid.UUID(int=id_int))
    fields["timestamp"] = time_text(datetime(*moment, tzinfo=UTC))
    return fields


def _plain_draft(value: Any) -> str | None:
    """orjson's compact text of ``value`` when ``value`` holds only what JSON has and nests less
    deep than the scrub's limit (see :meth:`RowBuilder.json_text`), else ``None``."""
    try:
        draft = orjson.dumps(value, default=_refuse, option=_PLAIN_VALUES).decode()  # no cycles either
    except TypeError:  # orjson.JSONEncodeError too
        return None
    # An enum member's value may nest deeper in orjson's text than in the walk: a bound still.
    return draft if _nesting_within(draft, MAX_DEPTH - 1) else None


def decode_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row with its JSON columns parsed back into objects."""
    out = dict(row)
    for name in JSON_COLUMNS:
        text = out.get(name)
        if isinstance(text, str):
            try:
                out[name] = json.loads(text)
            except json.JSONDecodeError:
                out[name] = text  # altered by hand; keep what is there for the operator to see
    return out
