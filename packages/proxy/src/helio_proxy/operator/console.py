"""The console's read views on the operator API: audit, feed, analytics, sessions, tools.

=============================================  ======  ===============================================
endpoint                                       role    answer
=============================================  ======  ===============================================
``GET /api/feed``                              viewer  keyset page of recent tool calls
``GET /api/audit``                             viewer  keyset page of records (filters below)
``GET /api/audit/count``                       viewer  how many records match
``GET /api/audit/export?format=csv|json``      viewer  every matching record, streamed
``GET /api/audit/{id}``                        viewer  one record and its hash-chain status
``GET /api/analytics?from&to``                 viewer  totals, top tools, approvals, series, overhead
``GET /api/sessions/{id}``                     viewer  evidence, context, dependencies, calls
``GET /api/tools``                             viewer  baselines, annotations, drift per upstream
``POST /api/tools/{name}/accept``              admin   accept a drifted tool's new definition
=============================================  ======  ===============================================

Everything is read from the store (the session view also from the proxy's session state), so
every replica on one database answers alike. :class:`AuditTail` turns new audit records into
``action`` events on ``/api/events`` while anyone listens.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from helio_proxy.audit import console
from helio_proxy.audit.export import EXPORT_COLUMNS, csv_cell
from helio_proxy.baselines import BaselineError, StoredTool, accept_pending, baseline_key, load_tools
from helio_proxy.evidence.store import SessionStore
from helio_proxy.operator import models
from helio_proxy.operator.api import ApiError, read_model, require
from helio_proxy.operator.auth import Principal
from helio_proxy.operator.events import EventBus
from helio_proxy.store.base import Store
from helio_proxy.store.tables import AUDIT_RECORDS

log = logging.getLogger("helio_proxy.operator.console")

SESSION_CALLS: Final = 500
"""Most audit records the session view lists (oldest first)."""
MAX_ANALYTICS_SPAN: Final = timedelta(days=93)
TAIL_INTERVAL: Final = 0.25
"""Seconds between looks for new audit records while someone watches ``/api/events``."""
TAIL_BATCH: Final = 500

Viewer = Annotated[Principal, Depends(require("viewer"))]
Admin = Annotated[Principal, Depends(require("admin"))]

_NO_STORE: Final = {"cache-control": "no-store"}


def _when(value: str | None, name: str) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; naive is UTC) or epoch milliseconds."""
    if value is None or value == "":
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ApiError(
            400, f"query parameter {name!r} must be an ISO 8601 time or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1970 <= parsed.astimezone(UTC).year <= 9999:
        raise ApiError(400, f"query parameter {name!r} is out of range")
    return parsed


Text = Annotated[str | None, Query(max_length=1000)]


@dataclass(frozen=True, slots=True)
class Filters:
    """The audit filters as query parameters (one dependency, shared by every listing)."""

    where: console.ConsoleFilter

    @classmethod
    def parse(
        cls,
        from_: Annotated[
            str | None, Query(alias="from", description="ISO 8601 or epoch ms, inclusive")
        ] = None,
        to: Annotated[str | None, Query(description="ISO 8601 or epoch ms, exclusive")] = None,
        tool: Annotated[str | None, Query(max_length=1000, description="exact tool name")] = None,
        upstream: Annotated[str | None, Query(max_length=1000, description="the upstream's name")] = None,
        decision: Annotated[str | None, Query(max_length=100, description="policy decision")] = None,
        reason: Annotated[str | None, Query(max_length=100, description="block reason")] = None,
        rule: Annotated[str | None, Query(max_length=1000, description="matched rule name")] = None,
        session: Annotated[str | None, Query(max_length=1000, description="session id")] = None,
        agent: Annotated[str | None, Query(max_length=1000, description="agent id")] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="words in the arguments (prefix match)")
        ] = None,
        kind: Annotated[str | None, Query(max_length=100, description="record kind, e.g. tool_call")] = None,
    ) -> Filters:
        if q is not None and q.strip():
            try:
                console.search_terms(q)
            except console.FilterError as exc:
                raise ApiError(400, str(exc)) from None
        return cls(
            console.ConsoleFilter(
                since=_when(from_, "from"),
                until=_when(to, "to"),
                tool=tool or None,
                upstream=upstream or None,
                decision=decision or None,
                reason=reason or None,
                rule=rule or None,
                session=session or None,
                agent=agent or None,
                q=q.strip() if q and q.strip() else None,
                kind=kind or None,
            )
        )


FilterQuery = Annotated[Filters, Depends(Filters.parse)]
Limit = Annotated[int, Query(ge=1, le=console.MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=100, description="next_cursor of the previous page")]


def _checked_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        console.decode_cursor(cursor)
    except console.FilterError as exc:
        raise ApiError(400, str(exc)) from None
    return cursor


def _tool_view(stored: StoredTool) -> dict[str, Any]:
    definition = dict(stored.baseline.definition)
    drift = None
    if stored.pending is not None:
        drift = {
            "since": stored.pending_since,
            "aspects": list(stored.pending.aspects),
            "fingerprint": stored.pending.current.fingerprint,
            "definition": dict(stored.pending.current.definition),
        }
    annotations = definition.get("annotations")
    schema = definition.get("inputSchema")
    description = definition.get("description")
    return {
        "upstream": stored.upstream,
        "name": stored.name,
        "fingerprint": stored.baseline.fingerprint,
        "first_seen_at": stored.first_seen_at,
        "accepted_at": stored.accepted_at,
        "accepted_by": stored.baseline.accepted_by,
        "description": description if isinstance(description, str) else None,
        "annotations": annotations if isinstance(annotations, dict) else None,
        "input_schema": schema if isinstance(schema, dict) else None,
        "definition": definition,
        "drift": drift,
    }


def console_router(
    store: Store,
    sessions: SessionStore,
    upstreams: Callable[[], Sequence[str | None]],
    *,
    on_accepted: Callable[[str, str], Awaitable[object]] | None = None,
) -> APIRouter:
    """The routes above over ``store``; ``upstreams`` names the configured upstreams (None: unnamed).

    ``on_accepted(upstream_key, tool)`` runs after an acceptance is stored and before the route
    answers: the running proxy takes the new baseline up there, so the agent's next call is
    judged against it (without it the proxy's poll would, within a couple of seconds).
    """
    router = APIRouter(tags=["console"])

    async def _page(where: console.ConsoleFilter, limit: int, cursor: str | None) -> Response:
        records, next_cursor = await store.read(
            lambda conn: console.page(conn, where, limit=limit, cursor=_checked_cursor(cursor))
        )
        return JSONResponse({"data": records, "limit": limit, "next_cursor": next_cursor}, headers=_NO_STORE)

    @router.get(
        "/api/audit",
        response_model=models.KeysetPage[models.AuditRecord],
        summary="Audit records matching the filters, newest first (keyset pages)",
    )
    async def audit(  # pyright: ignore[reportUnusedFunction]
        principal: Viewer, filters: FilterQuery, limit: Limit = 100, cursor: Cursor = None
    ) -> Response:
        return await _page(filters.where, limit, cursor)

    @router.get(
        "/api/feed",
        response_model=models.KeysetPage[models.AuditRecord],
        summary="The latest tool calls (the Feed's first screen; live ones arrive on /api/events)",
    )
    async def feed(  # pyright: ignore[reportUnusedFunction]
        principal: Viewer, filters: FilterQuery, limit: Limit = 100, cursor: Cursor = None
    ) -> Response:
        where = filters.where
        if where.kind is None:
            where = where.model_copy(update={"kind": "tool_call"})
        return await _page(where, limit, cursor)

    @router.get(
        "/api/audit/count", response_model=models.Data[models.Count], summary="How many records match"
    )
    async def audit_count(principal: Viewer, filters: FilterQuery) -> Response:  # pyright: ignore[reportUnusedFunction]
        total = await store.read(lambda conn: console.count(conn, filters.where))
        return JSONResponse({"data": {"total": total}}, headers=_NO_STORE)

    @router.get(
        "/api/audit/export",
        summary="Every matching record as CSV or JSON, newest first, streamed",
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {}},
                "description": "a file",
            }
        },
    )
    async def audit_export(  # pyright: ignore[reportUnusedFunction]
        principal: Viewer,
        filters: FilterQuery,
        format: Annotated[Literal["csv", "json"], Query()] = "csv",
    ) -> Response:
        where = filters.where

        async def rows() -> AsyncIterator[list[dict[str, Any]]]:
            cursor: str | None = None
            while True:
                batch, cursor = await store.read(
                    lambda conn, after=cursor: console.page(
                        conn, where, limit=console.EXPORT_PAGE, cursor=after
                    )
                )
                if batch:
                    yield batch
                if cursor is None:
                    return

        async def as_csv() -> AsyncIterator[bytes]:
            out = io.StringIO(newline="")
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(EXPORT_COLUMNS)
            async for batch in rows():
                for record in batch:
                    writer.writerow([csv_cell(record.get(name)) for name in EXPORT_COLUMNS])
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
            if out.tell():
                yield out.getvalue().encode()

        async def as_json() -> AsyncIterator[bytes]:
            yield b"["
            first = True
            async for batch in rows():
                parts: list[str] = []
                for record in batch:
                    item = {name: record.get(name) for name in EXPORT_COLUMNS}
                    parts.append(
                        ("\n" if first else ",\n") + json.dumps(item, ensure_ascii=False, default=str)
                    )
                    first = False
                yield "".join(parts).encode()
            yield b"\n]\n"

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {
            "content-disposition": f'attachment; filename="helio-audit-{stamp}.{format}"',
            "cache-control": "no-store",
        }
        if format == "json":
            return StreamingResponse(as_json(), media_type="application/json", headers=headers)
        return StreamingResponse(as_csv(), media_type="text/csv; charset=utf-8", headers=headers)

    @router.get(
        "/api/audit/{record_id}",
        response_model=models.Data[models.AuditRecordDetail],
        summary="One audit record with its hash-chain status",
    )
    async def audit_record(principal: Viewer, record_id: str) -> Response:  # pyright: ignore[reportUnusedFunction]
        record = await store.read(lambda conn: console.by_id(conn, record_id))
        if record is None:
            raise ApiError(404, f"no audit record {record_id}")
        return JSONResponse({"data": record}, headers=_NO_STORE)

    @router.get(
        "/api/analytics",
        response_model=models.Data[models.Analytics],
        summary="Totals, top tools, approvals, an hourly series and proxy overhead for a time range",
    )
    async def analytics(  # pyright: ignore[reportUnusedFunction]
        principal: Viewer,
        from_: Annotated[str | None, Query(alias="from", description="default: 24 hours before `to`")] = None,
        to: Annotated[str | None, Query(description="default: now")] = None,
        top: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Response:
        until = _when(to, "to") or datetime.now(UTC)
        since = _when(from_, "from") or until - timedelta(hours=24)
        if since >= until:
            raise ApiError(400, "'from' must be before 'to'")
        if until - since > MAX_ANALYTICS_SPAN:
            raise ApiError(400, f"the range may span at most {MAX_ANALYTICS_SPAN.days} days")
        data = await store.read(lambda conn: console.analytics(conn, since, until, top=top))
        return JSONResponse({"data": data}, headers=_NO_STORE)

    @router.get(
        "/api/sessions/{session_id}",
        response_model=models.Data[models.SessionView],
        summary="One agent session: evidence, context, declared dependencies and its calls in order",
    )
    async def session_view(principal: Viewer, session_id: str) -> Response:  # pyright: ignore[reportUnusedFunction]
        snapshot = await sessions.snapshot(session_id)

        def calls(conn: Connection) -> tuple[list[dict[str, Any]], bool]:
            c = AUDIT_RECORDS.c
            query = (
                select(AUDIT_RECORDS)
                .where(c.session_id == session_id)
                .order_by(c.timestamp.desc(), c.seq.desc())
                .limit(SESSION_CALLS + 1)
            )
            rows = [console.present(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]
            truncated = len(rows) > SESSION_CALLS
            rows = rows[:SESSION_CALLS]
            rows.reverse()
            return rows, truncated

        records, truncated = await store.read(calls)
        evidence = [
            {
                "evidence_key": e.evidence_key,
                "tool_name": e.tool_name,
                "data": e.data,
                "timestamp": e.timestamp,
                "expires_at": e.expires_at,
                "verified": e.verified,
                "call_id": e.call_id,
            }
            for e in snapshot.evidence.values()
        ]
        data = {
            "session_id": session_id,
            "evidence": evidence,
            "expired_evidence": dict(snapshot.expired),
            "context": dict(snapshot.context),
            "dependencies": [
                {"tool_name": tool, "requires": list(requires)}
                for tool, requires in snapshot.dependencies.items()
            ],
            "completed_tools": [
                {
                    "tool_name": t.tool_name,
                    "timestamp": t.timestamp,
                    "succeeded": t.succeeded,
                    "call_id": t.call_id,
                }
                for t in snapshot.completed_tools
            ],
            "calls": records,
            "calls_truncated": truncated,
        }
        return JSONResponse({"data": data}, headers=_NO_STORE)

    async def _tools() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in upstreams():
            key = baseline_key(name)
            out.extend(_tool_view(stored) for stored in await store.read(load_tools(key)))
        return out

    @router.get(
        "/api/tools", response_model=models.Data[list[models.ToolView]], summary="Every upstream's tools"
    )
    async def tools(principal: Viewer) -> Response:  # pyright: ignore[reportUnusedFunction]
        return JSONResponse({"data": await _tools()}, headers=_NO_STORE)

    accept_body = {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": models.AcceptTool.model_json_schema()}},
        }
    }

    async def accept_tool(request: Request, principal: Admin, name: str) -> Response:
        body = await read_model(request, models.AcceptTool)
        configured = [baseline_key(u) for u in upstreams()]
        if body.upstream is not None:
            if body.upstream not in configured:
                raise ApiError(
                    404, f"no upstream {body.upstream!r}", {"upstreams": [u for u in configured if u]}
                )
            candidates = [body.upstream]
        else:
            candidates = [
                key
                for key in configured
                if any(t.name == name for t in await store.read(load_tools(key, [name])))
            ]
            if len(candidates) > 1:
                raise ApiError(
                    400,
                    f"several upstreams have a tool {name!r}; say which in the body's 'upstream'",
                    {"upstreams": candidates},
                )
            if not candidates:
                raise ApiError(404, f"no baseline for tool {name!r}")
        try:
            accepted = await store.write(
                accept_pending(candidates[0], name, principal.name, datetime.now(UTC))
            )
        except BaselineError as exc:
            status = 404 if "no baseline" in str(exc) else 409
            raise ApiError(status, str(exc)) from None
        if on_accepted is not None:
            await on_accepted(accepted.upstream, name)
        refreshed = await store.read(load_tools(accepted.upstream, [name]))
        view = _tool_view(refreshed[0] if refreshed else accepted)
        return JSONResponse({"data": view}, headers=_NO_STORE)

    router.add_api_route(
        "/api/tools/{name}/accept",
        accept_tool,
        methods=["POST"],
        response_model=models.Data[models.ToolView],
        openapi_extra=accept_body,
        summary="Accept a drifted tool's new definition as its baseline (admin)",
    )
    return router


class AuditTail:
    """Publishes each new audit record as an ``action`` event while ``/api/events`` has listeners.

    It reads the store, not the recorder, so it sees every replica's records; it starts when a
    listener connects and stops once none is left.
    """

    def __init__(self, store: Store, bus: EventBus, *, interval: float = TAIL_INTERVAL) -> None:
        self.store = store
        self.bus = bus
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="helio-audit-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        seq = await self.store.read(console.last_seq)
        idle = 0
        while True:
            await asyncio.sleep(self.interval)
            if self.bus.subscribers == 0:
                idle += 1
                if idle > 8:  # the listener that woke us may not have subscribed yet
                    return
                continue
            idle = 0
            try:
                rows = await self.store.read(
                    lambda conn, after=seq: console.since_seq(conn, after, TAIL_BATCH)
                )
            except Exception as exc:
                log.warning("the live feed could not read new audit records: %s", exc)
                continue
            for record in rows:
                seq = max(seq, int(record["seq"]))
                self.bus.publish("action", record)
