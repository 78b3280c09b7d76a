"""Recording a forwarded call's outcome in its session (prerequisites, produced evidence).

The upstream's answer is observed on its way back; the record is written before the answer
reaches the agent, so a follow-up call the agent makes right after never races it. For an SSE
answer that means just before the response event is relayed.

The call's id travels back with its result: an allowed ``tools/call`` result gets
``result._meta["io.gethelio/call-id"]`` (:data:`CALL_ID_META_KEY`), the id the SDK marks
evidence with (``ctx.call_id_of(result)``). Nothing else in the upstream's answer changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

from helio_proxy.config.policies import Rule
from helio_proxy.errors import UpstreamError
from helio_proxy.evidence import EvidenceService, new_call_id
from helio_proxy.evidence.gates import CALL_ID_META_KEY
from helio_proxy.gateway.exchange import JsonReply, Reply, UpstreamMessage
from helio_proxy.jsonrpc import dumps
from helio_proxy.session.identity import SessionIdentity


def stamped(payload: Any, call_id: str) -> dict[str, Any] | None:
    """``payload`` with the call id in ``result._meta``, or ``None`` when it holds no result object."""
    if not isinstance(payload, dict):
        return None
    result = cast(dict[str, Any], payload).get("result")
    if not isinstance(result, dict):
        return None
    result = cast(dict[str, Any], result)
    meta = result.get("_meta")
    meta = cast(dict[str, Any], meta) if isinstance(meta, dict) else {}
    return {**payload, "result": {**result, "_meta": {**meta, CALL_ID_META_KEY: call_id}}}


class CompletionRecorder:
    """Collects one call's response (a :data:`ResponseObserver`) and records it once."""

    def __init__(
        self,
        evidence: EvidenceService,
        tool: str,
        rule: Rule | None,
        identity: SessionIdentity,
        arguments: Any = None,
    ) -> None:
        self.evidence = evidence
        self.tool = tool
        self.rule = rule
        self.identity = identity
        self.arguments = arguments
        self.call_id = new_call_id()
        self._response: dict[str, Any] | None = None
        self._seen = False
        self._recorded = False

    def observe(self, payload: dict[str, Any] | None, _error: UpstreamError | None) -> None:
        if not self._seen:
            self._seen = True
            self._response = payload

    async def flush(self) -> None:
        """Record the call if its answer (or failure) has been seen and not yet recorded."""
        if self._seen and not self._recorded:
            self._recorded = True
            await self.evidence.completed(
                self.tool, self.rule, self.identity, self.call_id, self._response, self.arguments
            )

    def stamp(self, reply: Reply) -> Reply:
        """A JSON reply carrying the upstream's result, with the call id in ``result._meta``."""
        if not isinstance(reply, JsonReply) or reply.payload is None or reply.payload is not self._response:
            return reply
        payload = stamped(reply.payload, self.call_id)
        if payload is None:
            return reply
        return JsonReply(reply.status, dumps(payload), reply.headers, payload)

    async def relay(self, messages: AsyncIterator[UpstreamMessage]) -> AsyncIterator[UpstreamMessage]:
        """``messages`` unchanged, recording the call before the message that is its response (which
        gets the call id)."""
        try:
            async for message in messages:
                first = self._seen and not self._recorded
                await self.flush()
                if first:
                    # The message relayed right after the answer was observed is the answer.
                    payload = stamped(self._response, self.call_id)
                    if payload is not None:
                        message = message.replaced(payload)
                yield message
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()
            with contextlib.suppress(Exception):
                await self.flush()
