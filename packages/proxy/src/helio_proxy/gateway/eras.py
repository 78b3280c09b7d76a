"""MCP protocol eras: what a message claims to speak, and what an upstream pin allows.

Two eras share the streamable HTTP endpoint. *Legacy* (``2025-03-26`` to ``2025-11-25``) opens a
session with the ``initialize`` handshake and names it with ``Mcp-Session-Id``. *Modern*
(``2026-07-28``) has no handshake and no session: every request carries its protocol version,
client info and capabilities in ``params._meta`` and mirrors its method (and tool, prompt or
resource name) in the ``Mcp-Method`` / ``Mcp-Name`` headers.

The proxy reads the era from the body, never from a header. With ``upstream.protocol_version:
auto`` it relays whatever the client speaks. A pinned upstream refuses the other era's opening
at the proxy, with HTTP 400 and ``-32600``: a modern request to a legacy pin (a dual-era client,
such as the official SDK in auto mode, then falls back to ``initialize``), or an ``initialize``
to a modern pin (the error names the version the upstream speaks).
"""

from __future__ import annotations

from typing import Any, Final, Literal, cast

from helio_proxy.gateway.exchange import JsonReply, error_reply
from helio_proxy.jsonrpc import INVALID_REQUEST, Kind, Message

MODERN_PROTOCOL: Final = "2026-07-28"
"""The first protocol revision without the ``initialize`` handshake."""

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"

Era = Literal["legacy", "modern"]


def era_of_version(version: str) -> Era:
    """Protocol versions are dates, so they order as strings."""
    return "modern" if version >= MODERN_PROTOCOL else "legacy"


def meta_version(message: Message) -> str | None:
    """The protocol version in the request's ``_meta`` envelope (modern requests carry one)."""
    params = message.params
    meta = params.get("_meta") if params is not None else None
    if not isinstance(meta, dict):
        return None
    version = cast(dict[str, Any], meta).get(META_PROTOCOL_VERSION)
    return version if isinstance(version, str) else None


def opening_era(message: Message) -> tuple[Era, str] | None:
    """The era a request opens or speaks, with the version it names; ``None`` when it says nothing.

    A request with the ``_meta`` envelope is modern; ``initialize`` opens a legacy session. Other
    legacy requests carry no version in the body (the session already chose one).
    """
    if message.kind is not Kind.REQUEST:
        return None
    version = meta_version(message)
    if version is not None:
        return era_of_version(version), version
    if message.method == "initialize":
        params = message.params or {}
        offered = params.get("protocolVersion")
        return "legacy", offered if isinstance(offered, str) else "unknown"
    return None


def pin_refusal(message: Message, pin: str) -> JsonReply | None:
    """The proxy's answer to a request a pinned upstream cannot serve (``None``: forward it)."""
    if pin == "auto":
        return None
    opened = opening_era(message)
    if opened is None:
        return None
    era, requested = opened
    pinned_era = era_of_version(pin)
    if era == pinned_era:
        return None
    data = {"reason": "protocol_pinned", "supported": [pin], "requested": requested}
    if pinned_era == "legacy":
        text = (
            f"this upstream is pinned to MCP {pin}, which opens sessions with initialize; "
            f"this request speaks {requested} (per-request _meta): connect with initialize"
        )
    else:
        text = (
            f"this upstream is pinned to MCP {pin}, which has no initialize handshake; "
            f"the client offered {requested}: use a client that speaks {pin}"
        )
    return error_reply(message.id, INVALID_REQUEST, text, data, status=400)
