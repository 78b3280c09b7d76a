"""The approvals REST API on the dashboard port (never on the MCP or SDK ports).

=========================================  =========  =============================================
endpoint                                   role       body
=========================================  =========  =============================================
``GET /api/approvals?status&limit&offset``  viewer     list, newest first (``limit`` 1-200, default 50)
``GET /api/approvals/{id}``                 viewer     one ticket
``POST /api/approvals/{id}/approve``        approver   ``{"comment"?}``
``POST /api/approvals/{id}/deny``           approver   ``{"reason"?}``
``POST /api/approvals/{id}/break-glass``    admin      ``{"reason"}`` (required)
=========================================  =========  =============================================

The approver recorded is always the authenticated operator (:class:`Principal.name`); a body's
``approved_by`` is ignored. Deciding a ticket that is no longer open (or expired), or approving
one twice as the same operator, answers 409.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from helio_proxy.approvals.model import TicketConflict, TicketNotFound, TicketStatus, Verdict
from helio_proxy.approvals.service import ApprovalService
from helio_proxy.operator import ApiError, ApiRoute, Principal, ok, page, query_int, read_json

MAX_TEXT: Final = 2000
"""Longest comment or reason accepted (characters)."""

_STATUSES: Final = frozenset(s.value for s in TicketStatus)


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(400, f"body must include a non-empty {key!r}")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string")
    if len(value) > MAX_TEXT:
        raise ApiError(400, f"{key!r} is longer than {MAX_TEXT} characters")
    return value.strip()


def approval_routes(service: ApprovalService) -> list[ApiRoute]:
    """The endpoints, for ``HelioApp.operator_routes``."""

    async def list_(request: Request, principal: Principal) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in _STATUSES:
            raise ApiError(400, f"unknown status {status!r}", {"known": sorted(_STATUSES)})
        limit = query_int(request, "limit", 50, 1, 200)
        offset = query_int(request, "offset", 0, 0, 1_000_000)
        tickets, total = await service.list(status, limit, offset)
        return page([t.to_json() for t in tickets], total, limit, offset)

    async def get(request: Request, principal: Principal) -> Response:
        ticket = await service.get(request.path_params["id"])
        if ticket is None:
            raise ApiError(404, f"no approval ticket {request.path_params['id']}")
        return ok(ticket.to_json())

    async def _decide(request: Request, principal: Principal, verdict: str, text: str | None) -> Response:
        ticket_id = request.path_params["id"]
        try:
            ticket = await service.decide(ticket_id, Verdict(principal.name, verdict, text, principal.via))
        except TicketNotFound:
            raise ApiError(404, f"no approval ticket {ticket_id}") from None
        except TicketConflict as exc:
            raise ApiError(409, str(exc)) from None
        return ok(ticket.to_json())

    async def approve(request: Request, principal: Principal) -> Response:
        body = await read_json(request)
        return await _decide(request, principal, "approve", _text(body, "comment"))

    async def deny(request: Request, principal: Principal) -> Response:
        body = await read_json(request)
        return await _decide(request, principal, "deny", _text(body, "reason"))

    async def break_glass(request: Request, principal: Principal) -> Response:
        body = await read_json(request)
        return await _decide(request, principal, "break_glass", _text(body, "reason", required=True))

    return [
        ApiRoute("GET", "/api/approvals", list_, role="viewer"),
        ApiRoute("GET", "/api/approvals/{id}", get, role="viewer"),
        ApiRoute("POST", "/api/approvals/{id}/approve", approve, role="approver"),
        ApiRoute("POST", "/api/approvals/{id}/deny", deny, role="approver"),
        ApiRoute("POST", "/api/approvals/{id}/break-glass", break_glass, role="admin"),
    ]
