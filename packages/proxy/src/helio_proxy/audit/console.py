"""The console's view of the audit trail: filtered keyset pages, one record with its chain status,
streamed exports, and analytics over a time range.

Records are listed newest first by ``(timestamp, seq)``; a page's cursor is the last record's
pair, so the next page is one index range scan however deep it is (offsets get slower with
depth). Every equality filter has an index on ``(column, timestamp, seq)`` (migration
``0007_audit_console_indexes``), so a filtered page is one range scan as well. Text in the
arguments is searched through SQLite FTS5 or a PostgreSQL ``tsvector`` GIN index: whole words,
the last of them as a prefix, case-insensitive.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Connection, Select, case, func, literal_column, select, text, tuple_
from sqlalchemy.exc import OperationalError

from helio_proxy.audit.chain import GENESIS_HASH, record_hash
from helio_proxy.audit.rows import decode_row
from helio_proxy.store.base import time_text
from helio_proxy.store.tables import AUDIT_RECORDS

_C = AUDIT_RECORDS.c

MAX_PAGE: Final = 500
EXPORT_PAGE: Final = 1000
"""Records read per query while an export streams."""
MAX_SEARCH_TERMS: Final = 8

_SQLITE_UPSTREAM: Final = "(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.upstream') END)"
_WORD: Final = re.compile(r"[^\W_]+")
_CURSOR: Final = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)~(\d{1,19})$")


class FilterError(ValueError):
    """A filter value the store cannot search for (answered 400)."""


class ConsoleFilter(BaseModel):
    """Which records to list; unset fields do not filter. Combined with AND."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    tool: str | None = None
    upstream: str | None = None
    decision: str | None = None
    reason: str | None = None
    rule: str | None = None
    session: str | None = None
    agent: str | None = None
    q: str | None = None
    kind: str | None = None


def upstream_column(dialect: str) -> ColumnElement[Any]:
    """The upstream name in a record's metadata, as the index on it spells it."""
    if dialect == "postgresql":
        return func.helio_audit_upstream(_C.metadata)
    return literal_column(_SQLITE_UPSTREAM)


def search_terms(q: str) -> list[str]:
    terms = _WORD.findall(q)
    if not terms:
        raise FilterError("q must contain at least one letter or digit")
    return terms[:MAX_SEARCH_TERMS]


def _text_condition(dialect: str, q: str) -> ColumnElement[bool]:
    """PostgreSQL: the arguments' ``tsvector`` (GIN-indexed) holds every word, the last as a prefix."""
    terms = search_terms(q)
    words = [term.lower() for term in terms]
    query = " & ".join([*words[:-1], f"{words[-1]}:*"])
    # ``tool_input_words``: the words stored beside the arguments (migration ``0009``).
    return text("audit_records.tool_input_words @@ to_tsquery('simple', :tsq)").bindparams(tsq=query)  # pyright: ignore[reportReturnType]


def fts_query(q: str) -> str:
    """SQLite FTS5: every word quoted (so no FTS5 operator syntax gets through), the last as a prefix."""
    terms = search_terms(q)
    return " ".join([*(f'"{term}"' for term in terms[:-1]), f'"{terms[-1]}"*'])


def conditions(where: ConsoleFilter, dialect: str) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if where.since is not None:
        out.append(_C.timestamp >= time_text(where.since))
    if where.until is not None:
        out.append(_C.timestamp < time_text(where.until))
    equal = {
        "tool": _C.tool_name,
        "decision": _C.policy_decision,
        "reason": _C.block_reason,
        "rule": _C.matched_rule,
        "session": _C.session_id,
        "agent": _C.agent_id,
        "kind": _C.record_kind,
    }
    for field, column in equal.items():
        value = getattr(where, field)
        if value:
            out.append(column == value)
    if where.upstream:
        out.append(upstream_column(dialect) == where.upstream)
    if where.q and dialect == "postgresql":
        out.append(_text_condition(dialect, where.q))
    return out


def encode_cursor(record: Mapping[str, Any]) -> str:
    return f"{record['timestamp']}~{record['seq']}"


def decode_cursor(cursor: str) -> tuple[str, int]:
    found = _CURSOR.match(cursor)
    if found is None:
        raise FilterError("cursor is not one this API gave out")
    return found.group(1), int(found.group(2))


def _page_query(where: ConsoleFilter, dialect: str, limit: int, cursor: str | None) -> Select[Any]:
    query = select(AUDIT_RECORDS).where(*conditions(where, dialect))
    if cursor:
        stamp, seq = decode_cursor(cursor)
        query = query.where(tuple_(_C.timestamp, _C.seq) < tuple_(stamp, seq))
    return query.order_by(_C.timestamp.desc(), _C.seq.desc()).limit(limit)


def present(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: JSON decoded, the upstream lifted out of the metadata."""
    record = decode_row(row)
    metadata: Any = record.get("metadata")
    upstream: Any = cast("dict[str, Any]", metadata).get("upstream") if isinstance(metadata, dict) else None
    record["upstream"] = upstream if isinstance(upstream, str) else None
    return record


def page(
    conn: Connection, where: ConsoleFilter, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` matching records, newest first, and the cursor of the next page (or None).

    With a text search (``q``) records come in sequence order (the order they were written,
    which is timestamp order up to one write batch), because that is the order the search
    indexes yield them cheaply; on SQLite the page may then hold fewer than ``limit`` records
    with a cursor to continue from, when :data:`SEARCH_SCAN` candidates were examined.
    """
    limit = max(1, min(limit, MAX_PAGE))
    dialect = conn.dialect.name
    if where.q and dialect != "postgresql":
        return _search_page(conn, where, limit, cursor)
    if where.q:
        query = select(AUDIT_RECORDS).where(*conditions(where, dialect))
        if cursor:
            query = query.where(_C.seq < decode_cursor(cursor)[1])
        query = query.order_by(_C.seq.desc()).limit(limit + 1)
        rows = _search_postgres(conn, query)
    else:
        rows = list(conn.execute(_page_query(where, dialect, limit + 1, cursor)))
    records = [present(row._mapping) for row in rows[:limit]]  # pyright: ignore[reportPrivateUsage]
    more = len(rows) > limit
    return records, encode_cursor(records[-1]) if more and records else None


SEARCH_PROBE_MS: Final = 60
"""PostgreSQL: how long a search may walk the newest records before it asks the word index."""


def _search_postgres(conn: Connection, query: Select[Any]) -> list[Any]:
    """Words common in the trail are found fastest by walking the newest records and checking
    each; rare ones by the GIN index. The planner cannot tell them apart (it guesses a prefix's
    frequency), so the walk gets :data:`SEARCH_PROBE_MS` and, if cancelled, the index is used."""
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {SEARCH_PROBE_MS}")
    try:
        with conn.begin_nested():
            return list(conn.execute(query))
    except OperationalError as exc:
        if "statement timeout" not in str(exc):
            raise
    finally:
        conn.exec_driver_sql("SET LOCAL statement_timeout TO DEFAULT")
    conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
    try:
        return list(conn.execute(query))
    finally:
        conn.exec_driver_sql("SET LOCAL enable_indexscan TO DEFAULT")


SEARCH_CHUNK: Final = 2000
"""SQLite: the most candidates a search reads from the word index at once."""
SEARCH_SCAN: Final = 200_000

_WORDS_SQL: Final = "SELECT -rowid FROM audit_records_words WHERE audit_records_words MATCH :fts"
"""The word index's rowid is the record's seq negated (migration ``0009``): ascending is newest first."""


def _search_page(
    conn: Connection, where: ConsoleFilter, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """SQLite: walk the FTS5 matches newest first in chunks, applying the other filters to each.

    The first chunk is the page itself (a search with no other filter reads ``limit + 1``
    candidates and that many records); each further one is twice the last, up to
    :data:`SEARCH_CHUNK`, so another filter that rejects most candidates costs few queries."""
    match = fts_query(where.q or "")
    others = conditions(where, conn.dialect.name)
    below = decode_cursor(cursor)[1] if cursor else None
    found: list[dict[str, Any]] = []
    scanned = 0
    chunk = limit + 1
    while True:
        chunk_sql = _WORDS_SQL
        params: dict[str, Any] = {"fts": match, "n": chunk}
        if below is not None:
            chunk_sql += " AND rowid > :above"
            params["above"] = -below
        chunk_sql += " ORDER BY rowid LIMIT :n"
        seqs = [int(r[0]) for r in conn.execute(text(chunk_sql), params)]
        scanned += len(seqs)
        if seqs:
            query = (
                select(AUDIT_RECORDS)
                .where(_C.seq.in_(seqs), *others)
                .order_by(_C.seq.desc())
                .limit(limit + 1 - len(found))
            )
            found += [present(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]
        if len(found) > limit:
            return found[:limit], encode_cursor(found[limit - 1])
        if len(seqs) < chunk:
            return found, None
        below = seqs[-1]
        chunk = min(chunk * 2, SEARCH_CHUNK)
        if scanned >= SEARCH_SCAN:
            # Stop here; the cursor continues below the last candidate examined.
            last = found[-1]["timestamp"] if found else "0000-01-01T00:00:00.000000Z"
            return found, f"{last}~{below}"


def last_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(_C.seq), 0))).scalar_one())


def since_seq(conn: Connection, seq: int, limit: int) -> list[dict[str, Any]]:
    """Records written after ``seq``, oldest first (the live feed)."""
    query = select(AUDIT_RECORDS).where(_C.seq > seq).order_by(_C.seq).limit(limit)
    return [present(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]


def count(conn: Connection, where: ConsoleFilter) -> int:
    query = select(func.count()).select_from(AUDIT_RECORDS).where(*conditions(where, conn.dialect.name))
    if where.q and conn.dialect.name != "postgresql":
        matched = text(_WORDS_SQL.replace("SELECT -rowid", "SELECT -rowid AS seq")).bindparams(
            fts=fts_query(where.q)
        )
        query = query.where(_C.seq.in_(matched.columns(literal_column("seq"))))
    return int(conn.execute(query).scalar_one())


def by_id(conn: Connection, record_id: str) -> dict[str, Any] | None:
    """One record with ``chain``: whether its hash and its link to its predecessor hold."""
    row = conn.execute(select(AUDIT_RECORDS).where(_C.id == record_id)).first()
    if row is None:
        return None
    raw = dict(row._mapping)  # pyright: ignore[reportPrivateUsage]
    record = present(raw)
    record["chain"] = chain_status(conn, raw)
    return record


def chain_status(conn: Connection, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The record's own link in the hash chain (a full walk is ``helio audit verify``)."""
    stored = raw.get("hash")
    if not stored:
        return {"status": "unchained", "hash_matches": False, "prev_matches": None, "detail": "no hash"}
    matches = record_hash(raw) == stored
    prev = conn.execute(select(_C.hash).where(_C.seq == int(raw["seq"]) - 1)).first()
    if prev is None:
        # The first record, or its predecessor removed by retention (the anchor holds its hash).
        anchor = conn.execute(text("SELECT anchor_seq, anchor_hash FROM audit_chain WHERE id = 1")).first()
        expected = GENESIS_HASH
        if anchor is not None and int(anchor[0]) == int(raw["seq"]) - 1:
            expected = str(anchor[1])
        prev_matches: bool | None = (
            raw.get("prev_hash") == expected if int(raw["seq"]) == 1 or anchor else None
        )
    else:
        prev_matches = raw.get("prev_hash") == prev[0]
    if not matches:
        status, detail = "altered", "the record's contents do not match its hash"
    elif prev_matches is False:
        status, detail = "broken_link", "prev_hash is not the previous record's hash"
    else:
        status, detail = "ok", "hash and link to the previous record verified"
    return {"status": status, "hash_matches": matches, "prev_matches": prev_matches, "detail": detail}


# -- analytics -------------------------------------------------------------------------------------


def _percentiles(conn: Connection, column: Any, where: list[ColumnElement[bool]]) -> dict[str, Any]:
    base = select(column).where(*where, column.is_not(None))
    samples = int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    out: dict[str, Any] = {"samples": samples, "p50": None, "p95": None, "p99": None}
    if samples == 0:
        return out
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        offset = min(samples - 1, int(fraction * samples))
        value = conn.execute(base.order_by(column).limit(1).offset(offset)).scalar_one()
        out[name] = round(float(value), 3)
    return out


def analytics(conn: Connection, since: datetime, until: datetime, *, top: int = 10) -> dict[str, Any]:
    """Totals, top tools, approvals, an hourly series and the proxy's overhead for ``[since, until)``."""
    span = [_C.timestamp >= time_text(since), _C.timestamp < time_text(until)]
    window = [*span, _C.record_kind == "tool_call"]
    by_decision: dict[str, int] = {}
    for decision, n in conn.execute(
        select(_C.policy_decision, func.count()).where(*window).group_by(_C.policy_decision)
    ):
        by_decision[str(decision or "none")] = int(n)
    by_reason: dict[str, int] = {}
    for reason, n in conn.execute(
        select(_C.block_reason, func.count())
        .where(*window, _C.block_reason.is_not(None))
        .group_by(_C.block_reason)
    ):
        by_reason[str(reason)] = int(n)
    blocked_case = func.sum(case((_C.block_reason.is_not(None), 1), else_=0))
    calls = func.count()
    top_rows = conn.execute(
        select(_C.tool_name, calls, blocked_case)
        .where(*window)
        .group_by(_C.tool_name)
        .order_by(calls.desc(), _C.tool_name)
        .limit(top)
    )
    top_tools = [{"tool": str(t), "count": int(n), "blocked": int(b or 0)} for t, n, b in top_rows]
    statuses: Counter[str] = Counter()
    for status, n in conn.execute(
        select(_C.approval_status, func.count())
        .where(*span, _C.record_kind == "approval_resolution")
        .group_by(_C.approval_status)
    ):
        statuses[str(status)] += int(n)
    decided = statuses["approved"] + statuses["denied"] + statuses["timeout"]
    waits = _percentiles(conn, _C.approval_wait_ms, [*window, _C.approval_wait_ms > 0])
    approvals = {
        "requested": int(by_decision.get("require_approval", 0)),
        "approved": statuses["approved"],
        "denied": statuses["denied"],
        "timed_out": statuses["timeout"],
        "approval_rate": round(statuses["approved"] / decided, 4) if decided else None,
        "wait_ms_p50": waits["p50"],
        "wait_ms_p95": waits["p95"],
    }
    hour = func.substr(_C.timestamp, 1, 13)
    hours: dict[str, dict[str, int]] = {}
    for stamp, n, blocked in conn.execute(
        select(hour, func.count(), blocked_case).where(*window).group_by(hour).order_by(hour)
    ):
        hours[str(stamp)] = {"total": int(n), "blocked": int(blocked or 0)}
    series: list[dict[str, Any]] = []
    cursor = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while cursor < until and len(series) < 24 * 93:
        key = cursor.strftime("%Y-%m-%dT%H")
        got = hours.get(key, {"total": 0, "blocked": 0})
        series.append(
            {
                "hour": cursor.strftime("%Y-%m-%dT%H:00:00Z"),
                "total": got["total"],
                "allowed": got["total"] - got["blocked"],
                "blocked": got["blocked"],
            }
        )
        cursor += timedelta(hours=1)
    return {
        "from": time_text(since),
        "to": time_text(until),
        "total": sum(by_decision.values()),
        "by_decision": by_decision,
        "by_block_reason": by_reason,
        "top_tools": top_tools,
        "approvals": approvals,
        "series": series,
        "overhead_ms": _percentiles(conn, _C.proxy_compute_ms, window),
    }
