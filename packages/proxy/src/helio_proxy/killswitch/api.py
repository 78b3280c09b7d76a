"""The kill switch on the operator API (dashboard port).

================================  ======  ==========================================================
endpoint                          role    body
================================  ======  ==========================================================
``GET /api/kill-switch``          viewer  the state: ``{engaged, unreadable, scopes: [...]}``
``POST /api/kill-switch``         admin   ``{"engaged": bool, "reason"?, "upstream"?, "agent"?}``
================================  ======  ==========================================================

``GET`` is open to every operator (the console shows a banner to everyone while the switch is
on); changing it needs ``admin``. The actor recorded is the authenticated operator. Without
``upstream`` or ``agent`` the scope is ``global``; with one of them, that upstream's or agent's
calls only (both at once: 400).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from helio_proxy.killswitch.model import GLOBAL, ScopeError, agent_scope, parse_scope, upstream_scope
from helio_proxy.killswitch.service import KillSwitch
from helio_proxy.operator import ApiError, ApiRoute, Principal, ok, read_json
from helio_proxy.operator.models import Data

MAX_REASON: Final = 2000


class KillSwitchScope(BaseModel):
    scope: str = Field(description="global, upstream:NAME or agent:ID")
    reason: str | None = None
    actor: str | None = None
    changed_at: str | None = None
    source: str | None = Field(default=None, description="cli or api")


class KillSwitchState(BaseModel):
    engaged: bool = Field(description="Some scope is engaged (or the state cannot be read).")
    unreadable: str | None = Field(
        default=None, description="Why the state cannot be read (every call is blocked)."
    )
    scopes: list[KillSwitchScope]


class KillSwitchChange(BaseModel):
    engaged: bool = Field(description="true: kill; false: resume.")
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    upstream: str | None = Field(default=None, description="Only this upstream's calls.")
    agent: str | None = Field(default=None, description="Only this agent's calls.")


class KillSwitchChanged(KillSwitchState):
    changed: bool = Field(description="false when the scope was already in the state asked for.")
    scope: str


def scope_of(upstream: str | None, agent: str | None) -> str:
    """The scope ``--upstream`` / ``--agent`` (or the API's fields) name; raises :class:`ScopeError`."""
    if upstream is not None and agent is not None:
        raise ScopeError("name an upstream or an agent, not both")
    if upstream is not None:
        return parse_scope(upstream_scope(upstream))
    if agent is not None:
        return parse_scope(agent_scope(agent))
    return GLOBAL


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string")
    value = value.strip()
    if len(value) > MAX_REASON:
        raise ApiError(400, f"{key!r} is longer than {MAX_REASON} characters")
    return value or None


def kill_switch_routes(switch: KillSwitch, upstreams: Any = None) -> list[ApiRoute]:
    """The two routes; ``upstreams()`` lists the configured upstream names (unknown ones: 400)."""

    async def get(request: Request, principal: Principal) -> Response:
        return ok(switch.to_json())

    async def post(request: Request, principal: Principal) -> Response:
        body = await read_json(request)
        engaged = body.get("engaged")
        if not isinstance(engaged, bool):
            raise ApiError(400, "body must include 'engaged': true or false")
        upstream = _optional_text(body, "upstream")
        agent = _optional_text(body, "agent")
        if upstream is not None and upstreams is not None and upstream not in upstreams():
            raise ApiError(400, f"unknown upstream {upstream!r}")
        try:
            scope = scope_of(upstream, agent)
        except ScopeError as exc:
            raise ApiError(400, str(exc)) from None
        changed = await switch.switch(
            scope, engaged=engaged, actor=principal.name, reason=_optional_text(body, "reason"), source="api"
        )
        return ok({**switch.to_json(), "changed": changed, "scope": scope})

    return [
        ApiRoute(
            "GET",
            "/api/kill-switch",
            get,
            role="viewer",
            summary="The kill switch's state: every engaged scope.",
            response_model=Data[KillSwitchState],
            tags=["kill switch"],
        ),
        ApiRoute(
            "POST",
            "/api/kill-switch",
            post,
            role="admin",
            summary="Engage (kill) or release (resume) the kill switch, globally or for one upstream or agent.",
            response_model=Data[KillSwitchChanged],
            body=KillSwitchChange,
            tags=["kill switch"],
        ),
    ]
