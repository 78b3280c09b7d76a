"""Operator endpoints for limits and budgets (dashboard port, role ``viewer``).

* ``GET /api/limits``: every live rate/spend bucket (most recently used first) with its current
  use, limit and reset time; ``limit`` (1-1000, default 100) and ``offset`` page through them.
* ``GET /api/budgets``: every configured budget with its epoch and the pots (buckets) it holds.
* ``GET /api/budgets/{name}/events``: the budget's ledger, newest first (``limit``, ``offset``,
  ``epoch``).
* ``GET /api/budgets/{name}/events/export?format=csv|json``: the whole ledger as a download.

Everything is read from the store, so every replica on one database reports the same numbers.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from helio_proxy.audit.export import csv_cell
from helio_proxy.limits import ledger
from helio_proxy.limits.amounts import decimal_text
from helio_proxy.limits.blocks import iso
from helio_proxy.limits.catalog import LimitShape, budget_shapes, rule_shapes
from helio_proxy.limits.gate import LimitsGate
from helio_proxy.limits.windows import EMPTY, utilization
from helio_proxy.operator import ApiError, ApiRoute, Principal, page, query_int

MAX_PAGE: Final = 1000
EXPORT_ROWS: Final = 100_000
"""Most ledger rows one export returns (newest first)."""


def _bucket_json(shape: LimitShape, row: ledger.BucketRow, conn: Connection, now: datetime) -> dict[str, Any]:
    usage = ledger.bucket_usage(conn, shape.charge(row.bucket), row.started_at, now)
    rate = shape.kind == "rate"
    idle_reset = None
    if shape.window.seconds is None and shape.window.idle_ttl is not None:
        idle_reset = row.last_activity + timedelta(seconds=shape.window.idle_ttl)
        if idle_reset <= now:  # an idle session pot starts over with its next charge
            usage = EMPTY
    reset_at = usage.reset_at(shape.window, now) if shape.window.seconds is not None else idle_reset
    out: dict[str, Any] = {
        "bucket": row.bucket.ledger_key,
        "scope": row.bucket.scope,
        "subject": row.bucket.subject,
        "current": usage.count if rate else decimal_text(usage.total),
        "limit": int(shape.limit) if rate else decimal_text(shape.limit),
        "remaining": max(int(shape.limit) - usage.count, 0)
        if rate
        else decimal_text(max(shape.limit - usage.total, Decimal(0))),
        "utilization": round(utilization(usage.total, shape.limit), 4),
        "window_seconds": shape.window.seconds,
        "reset_at": iso(reset_at),
        "reset_at_ms": int(reset_at.timestamp() * 1000) if reset_at is not None else None,
        "last_activity": iso(row.last_activity),
        "last_activity_ms": int(row.last_activity.timestamp() * 1000),
    }
    return out


def limits_routes(gate: LimitsGate) -> list[ApiRoute]:
    """The routes above, reading through ``gate`` (its store, clock and current config)."""

    async def limits(request: Request, principal: Principal) -> Response:
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, 10**9)
        shapes = {s.triple: s for s in rule_shapes(gate.config())}
        now = gate.clock()

        def job(conn: Connection) -> tuple[list[dict[str, Any]], int]:
            rows, total = ledger.bucket_rows(conn, list(shapes), limit=limit, offset=offset)
            items: list[dict[str, Any]] = []
            for row in rows:
                shape = shapes[(row.bucket.kind, row.bucket.owner, row.bucket.version)]
                item = {
                    "kind": shape.kind,
                    "rule": shape.owner,
                    "rule_index": shape.rule_index,
                    "key": shape.key,
                    "currency": shape.currency,
                }
                item.update(_bucket_json(shape, row, conn, now))
                items.append(item)
            return items, total

        items, total = await gate.store.read(job)
        return page(items, total, limit, offset)

    async def budgets(request: Request, principal: Principal) -> Response:
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, 10**9)
        config = gate.config()
        await gate.reconciled(config)
        shapes = budget_shapes(config, gate.epochs)
        chosen = shapes[offset : offset + limit]
        now = gate.clock()

        def job(conn: Connection) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for shape in chosen:
                budget = shape.budget
                assert budget is not None
                rows, count = ledger.bucket_rows(conn, [shape.triple], limit=MAX_PAGE)
                pots = [_bucket_json(shape, row, conn, now) for row in rows]
                out.append(
                    {
                        "name": budget.name,
                        "limit": decimal_text(budget.limit),
                        "currency": budget.currency,
                        "window": budget.window,
                        "key": budget.key,
                        "on_exceed": budget.on_exceed,
                        "epoch": int(shape.version),
                        "contributors": len(budget.contributors),
                        "bucket_count": count,
                        "buckets": pots,
                    }
                )
            return out

        items = await gate.store.read(job)
        return page(items, len(shapes), limit, offset)

    async def _known(name: str) -> None:
        configured = {b.name for b in gate.config().budgets}
        if name in configured:
            return
        known = await gate.store.read(ledger.budget_epochs)
        if name not in known:
            raise ApiError(404, f"unknown budget {name!r}")

    def _epoch(request: Request) -> int | None:
        raw = request.query_params.get("epoch")
        return None if raw is None else query_int(request, "epoch", 0, 1, 2**31)

    async def events(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        await _known(name)
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, 10**9)
        epoch = _epoch(request)
        rows, total = await gate.store.read(
            lambda conn: ledger.ledger_page(conn, name, epoch=epoch, limit=limit, offset=offset)
        )
        return page(rows, total, limit, offset)

    async def export(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise ApiError(400, "query parameter 'format' must be 'csv' or 'json'")
        await _known(name)
        epoch = _epoch(request)
        rows, _ = await gate.store.read(
            lambda conn: ledger.ledger_page(conn, name, epoch=epoch, limit=EXPORT_ROWS)
        )
        rows.reverse()  # oldest first, as a ledger reads
        filename = f"budget-{name}-events.{fmt}"
        headers = {"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"}
        if fmt == "json":
            body = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
            return Response(body, media_type="application/json", headers=headers)
        return Response(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)

    return [
        ApiRoute("GET", "/api/limits", limits),
        ApiRoute("GET", "/api/budgets", budgets),
        ApiRoute("GET", "/api/budgets/{name}/events", events),
        ApiRoute("GET", "/api/budgets/{name}/events/export", export),
    ]


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ledger.LEDGER_COLUMNS)
    for row in rows:
        # Amounts stay decimal text (never floats), quoted as text cells.
        writer.writerow([csv_cell(row.get(column)) for column in ledger.LEDGER_COLUMNS])
    return out.getvalue()
