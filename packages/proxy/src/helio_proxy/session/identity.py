"""Resolving a call's session id from the ``session.identity`` chain.

The chain is tried in order and the first source that yields a usable value wins:

* ``header``: a named ``x-`` header, e.g. ``x-helio-session-id: run-42`` (what the SDK's
  ``HelioContext.headers`` gives the agent's MCP client to send);
* ``meta`` with a ``name``: the string at that key of the call's ``params._meta``, e.g.
  ``"io.gethelio/session-id": "run-42"`` (what the SDK's ``HelioContext.meta`` gives an agent
  whose transport has no headers, such as ``helio wrap``'s stdio);
* ``meta`` without a ``name``: ``clientinfo:<name>@<version>`` from the call's
  ``params._meta["io.modelcontextprotocol/clientInfo"]``;
* ``legacy_header``: the transport's ``Mcp-Session-Id``, verbatim.

A value that is empty, blank or longer than :data:`MAX_SESSION_ID_LENGTH` characters is skipped,
as if the source were absent. Values are never trimmed or case-folded: the id the SDK posts to the
sideband must be byte-for-byte the id the agent sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from helio_proxy.config.sections import IdentitySource, SessionConfig

MAX_SESSION_ID_LENGTH: Final = 256
"""Longest session id accepted from any source (and on the sideband), in characters."""

ANONYMOUS_SESSION: Final = "unknown"
"""The shared bucket that session-keyed limits use for unresolved calls under ``on_unresolved: anonymous``."""

CLIENT_INFO_META_KEY: Final = "io.modelcontextprotocol/clientInfo"
"""The ``_meta`` key carrying the client's ``{name, version}``."""

LEGACY_SESSION_HEADER: Final = "mcp-session-id"

Source = Literal["header", "meta", "legacy_header", "transport"]


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """The outcome of resolution: a session id and the source it came from, or neither."""

    session_id: str | None
    source: Source | None = None
    """Which step of the chain produced the id (``None`` when unresolved)."""

    @property
    def resolved(self) -> bool:
        return self.session_id is not None

    def limit_bucket(self, on_unresolved: Literal["deny", "anonymous"]) -> str | None:
        """The key a session-keyed limit or budget counts under.

        ``None`` means the call must be blocked with ``session_unresolved`` (``on_unresolved:
        deny``); under ``anonymous`` every unresolved call shares :data:`ANONYMOUS_SESSION`.
        Evidence and ``requires`` gates never pool: they need a resolved id in both modes.
        """
        if self.session_id is not None:
            return self.session_id
        return ANONYMOUS_SESSION if on_unresolved == "anonymous" else None


UNRESOLVED: Final = SessionIdentity(None)


def usable(value: Any) -> str | None:
    """``value`` when it can serve as a session id (a non-blank string of 1-256 characters)."""
    if isinstance(value, str) and value.strip() and len(value) <= MAX_SESSION_ID_LENGTH:
        return value
    return None


def _meta(params: Mapping[str, Any] | None) -> dict[str, Any]:
    meta: Any = params.get("_meta") if params is not None else None
    return cast("dict[str, Any]", meta) if isinstance(meta, dict) else {}


def _client_info(params: Mapping[str, Any] | None) -> str | None:
    info: Any = _meta(params).get(CLIENT_INFO_META_KEY)
    if not isinstance(info, dict):
        return None
    fields = cast("dict[str, Any]", info)
    name, version = fields.get("name"), fields.get("version")
    if not (isinstance(name, str) and name and isinstance(version, str) and version):
        return None
    return f"clientinfo:{name}@{version}"


def resolve_session(
    chain: Sequence[IdentitySource],
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None,
    *,
    transport_session_id: str | None = None,
) -> SessionIdentity:
    """Walk ``chain`` over lower-cased ``headers`` and the call's ``params``.

    ``transport_session_id`` is an implicit last resort for transports that mint their own
    stream id (legacy SSE); it obeys the same length rules.
    """
    return _resolved(_compiled(chain), headers, params, transport_session_id)


_Steps = tuple[tuple[Callable[[Mapping[str, str], Mapping[str, Any] | None], Any], IdentitySource], ...]


def _compiled(chain: Sequence[IdentitySource]) -> _Steps:
    return tuple((_reader(step), step) for step in chain)


def _resolved(
    steps: _Steps,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None,
    transport_session_id: str | None,
) -> SessionIdentity:
    for read, step in steps:
        value = usable(read(headers, params))
        if value is not None:
            return SessionIdentity(value, step.source)
    if usable(transport_session_id) is not None:
        return SessionIdentity(transport_session_id, "transport")
    return UNRESOLVED


def _reader(step: IdentitySource) -> Callable[[Mapping[str, str], Mapping[str, Any] | None], Any]:
    """What ``step`` reads from a call's lower-cased headers and its params (branches taken once)."""
    if step.source == "header":
        assert step.name is not None
        name = step.name.lower()
        return lambda headers, _params: headers.get(name)
    if step.source == "meta":
        if step.name is None:
            return lambda _headers, params: _client_info(params)
        key = step.name
        return lambda _headers, params: _meta(params).get(key)
    return lambda headers, _params: headers.get(LEGACY_SESSION_HEADER)


class SessionResolver:
    """:func:`resolve_session` bound to a ``session`` config section (restart-only, so kept), its
    chain compiled once: each step's reader, the branches on its source and the header name's
    lower-casing taken when the resolver is made, not on every call."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self._steps = _compiled(config.identity)

    @property
    def on_unresolved(self) -> Literal["deny", "anonymous"]:
        return self.config.on_unresolved

    def resolve(
        self,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        *,
        transport_session_id: str | None = None,
    ) -> SessionIdentity:
        """The identity of one call (see :func:`resolve_session`)."""
        return _resolved(self._steps, headers, params, transport_session_id)
