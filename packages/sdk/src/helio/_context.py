"""``HelioContext``: one agent session, bound to the current thread or task while it is entered."""

import asyncio
import threading
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Self

from helio._call_id import call_id_of
from helio._call_id import structured_content as _structured
from helio._client import HelioClient, resolve_sideband_url
from helio._models import EvidenceReceipt, EvidenceStateReport
from helio._transport import Transport
from helio._wire import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_TTL_SECONDS,
    MAX_SESSION_ID_LENGTH,
    SESSION_HEADER,
    SESSION_META_KEY,
)

# A stack rather than a single value so that exits need no reset tokens: a token is only valid in
# the context that created it, which breaks when one HelioContext is entered from several threads.
_entered: ContextVar[tuple["HelioContext", ...]] = ContextVar("helio_entered_contexts", default=())


def current_context() -> "HelioContext | None":
    """The innermost ``HelioContext`` entered in this thread or task, or ``None``.

    It follows ``contextvars`` rules: an asyncio task sees the context that was current when the
    task was created, and a new thread starts with none unless it runs in a copied context
    (``contextvars.copy_context().run``).
    """
    stack = _entered.get()
    return stack[-1] if stack else None


class HelioContext:
    """An agent session on the sideband: its id, its evidence, its context, its dependencies.

    Use it as ``with HelioContext() as ctx:`` (or ``async with``): inside, ``current_context()``
    returns it, and the agent's MCP client must send ``ctx.headers`` so the proxy attributes its tool
    calls to this session; ``instrument=True`` (or ``helio.instrument()``) makes the HTTP libraries
    MCP clients use send them by themselves. Leaving the outermost ``with`` closes the client.
    ``session_id`` defaults to a fresh ``uuid4().hex``; any other id must be non-blank and at most
    256 characters. ``sideband_url`` defaults to ``HELIO_SDK_URL``, else ``http://127.0.0.1:3200``
    (see ``HelioClient``; ``proxy_url`` is its deprecated old name).
    """

    def __init__(
        self,
        sideband_url: str | None = None,
        session_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        token: str | None = None,
        transport: Transport | None = None,
        instrument: bool = False,
        proxy_url: str | None = None,
    ) -> None:
        if session_id is None:
            session_id = uuid.uuid4().hex
        elif not session_id.strip() or len(session_id) > MAX_SESSION_ID_LENGTH:
            raise ValueError(f"session_id must be non-blank and at most {MAX_SESSION_ID_LENGTH} characters")
        self._session_id = session_id
        url = resolve_sideband_url(sideband_url, proxy_url, stacklevel=2)
        self._client = HelioClient(url, timeout=timeout, token=token, transport=transport)
        self._required: dict[str, None] = {}  # insertion-ordered set
        self._lock = threading.Lock()
        self._depth = 0
        if instrument:
            from helio._instrument import ensure_instrumented  # here: that module imports this one

            ensure_instrumented()

    @property
    def session_id(self) -> str:
        """The session id sent with every sideband call and in ``headers``."""
        return self._session_id

    @property
    def client(self) -> HelioClient:
        """The ``HelioClient`` this context sends its calls through."""
        return self._client

    @property
    def headers(self) -> dict[str, str]:
        """Headers the agent's MCP client must send on every request: ``{"x-helio-session-id": id}``."""
        return {SESSION_HEADER: self._session_id}

    @property
    def meta(self) -> dict[str, str]:
        """The session as a ``params._meta`` entry: ``{"io.gethelio/session-id": id}``.

        For transports without headers (stdio, ``helio wrap``): pass it as the call's ``meta``.
        """
        return {SESSION_META_KEY: self._session_id}

    def mark_evidence(
        self,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl: int = DEFAULT_TTL_SECONDS,
        *,
        call_id: str | None = None,
    ) -> EvidenceReceipt:
        """Record evidence for this session; see ``HelioClient.mark_evidence``."""
        return self._client.mark_evidence(
            self._session_id, tool_name, evidence_key, data, ttl, call_id=call_id
        )

    @staticmethod
    def call_id_of(result: Any) -> str | None:
        """The proxy's call id of a ``tools/call`` result (``result._meta["io.gethelio/call-id"]``).

        Accepts the MCP SDK's ``CallToolResult``, a result dict or a whole JSON-RPC response; ``None``
        when the result carries no id. Pass it to :meth:`mark_evidence` as ``call_id``.
        """
        return call_id_of(result)

    def mark_result(
        self, tool_name: str, evidence_key: str, result: Any, data: Any = None, ttl: int = DEFAULT_TTL_SECONDS
    ) -> EvidenceReceipt:
        """Mark evidence bound to the call that returned ``result`` (its call id from ``_meta``).

        ``data`` defaults to the result's ``structuredContent`` when it has one.
        """
        if data is None:
            data = _structured(result)
        return self.mark_evidence(tool_name, evidence_key, data, ttl, call_id=call_id_of(result))

    def require_evidence(self, keys: Iterable[str]) -> None:
        """Note evidence keys this agent expects to need, for ``get_evidence_state`` to check.

        Purely local: the proxy never sees it (policy decides what is required). A single string
        counts as one key. Safe to call from several threads.
        """
        names = [keys] if isinstance(keys, str) else list(keys)
        with self._lock:
            self._required.update(dict.fromkeys(names))

    def set(self, key: str, value: Any) -> None:
        """Set context ``key`` to the JSON value ``value`` for this session (``POST /context``)."""
        self._client.set_context(self._session_id, key, value)

    def declare_dependency(self, tool_name: str, requires: Iterable[str]) -> None:
        """Declare that ``tool_name`` needs every tool in ``requires`` to have succeeded first."""
        self._client.declare_dependency(self._session_id, tool_name, requires)

    def get_evidence_state(self) -> EvidenceStateReport:
        """Fetch the session state and compare it with the keys from ``require_evidence``."""
        state = self._client.get_session_state(self._session_id)
        with self._lock:
            required = list(self._required)
        return EvidenceStateReport(
            state=state,
            required=required,
            satisfied=[key for key in required if key in state.evidence],
            missing=[key for key in required if key not in state.evidence],
        )

    async def amark_evidence(
        self,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl: int = DEFAULT_TTL_SECONDS,
        *,
        call_id: str | None = None,
    ) -> EvidenceReceipt:
        """``mark_evidence`` run in a worker thread, so the event loop is not blocked."""
        return await asyncio.to_thread(
            self.mark_evidence, tool_name, evidence_key, data, ttl, call_id=call_id
        )

    async def amark_result(
        self, tool_name: str, evidence_key: str, result: Any, data: Any = None, ttl: int = DEFAULT_TTL_SECONDS
    ) -> EvidenceReceipt:
        """:meth:`mark_result` without blocking the event loop."""
        return await asyncio.to_thread(self.mark_result, tool_name, evidence_key, result, data, ttl)

    async def aset(self, key: str, value: Any) -> None:
        """``set`` run in a worker thread."""
        await asyncio.to_thread(self.set, key, value)

    async def adeclare_dependency(self, tool_name: str, requires: Iterable[str]) -> None:
        """``declare_dependency`` run in a worker thread."""
        await asyncio.to_thread(self.declare_dependency, tool_name, requires)

    async def aget_evidence_state(self) -> EvidenceStateReport:
        """``get_evidence_state`` run in a worker thread."""
        return await asyncio.to_thread(self.get_evidence_state)

    def close(self) -> None:
        """Close the underlying client; later calls raise ``HelioError``."""
        self._client.close()

    def __enter__(self) -> Self:
        _entered.set((*_entered.get(), self))
        with self._lock:
            self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack = _entered.get()
        if self in stack:
            last = len(stack) - 1 - stack[::-1].index(self)
            _entered.set(stack[:last] + stack[last + 1 :])
        with self._lock:
            self._depth -= 1
            outermost = self._depth == 0
        if outermost:
            self.close()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"HelioContext(sideband_url={self._client.sideband_url!r}, session_id={self._session_id!r})"
