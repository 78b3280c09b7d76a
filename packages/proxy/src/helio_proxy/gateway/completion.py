"""Recording a forwarded call's outcome in its session (prerequisites, produced evidence).

The upstream's answer is observed on its way back; the record is written before the answer
reaches the agent, so a follow-up call the agent makes right after never races it. For an SSE
answer that means just before the response event is relayed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from helio_proxy.config.policies import Rule
from helio_proxy.errors import UpstreamError
from helio_proxy.evidence import EvidenceService, new_call_id
from helio_proxy.session.identity import SessionIdentity


class CompletionRecorder:
    """Collects one call's response (a :data:`ResponseObserver`) and records it once."""

    def __init__(
        self, evidence: EvidenceService, tool: str, rule: Rule | None, identity: SessionIdentity
    ) -> None:
        self.evidence = evidence
        self.tool = tool
        self.rule = rule
        self.identity = identity
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
            await self.evidence.completed(self.tool, self.rule, self.identity, self.call_id, self._response)

    async def relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks`` unchanged, recording the call before the chunk that carries its response."""
        try:
            async for chunk in chunks:
                await self.flush()
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            with contextlib.suppress(Exception):
                await self.flush()
