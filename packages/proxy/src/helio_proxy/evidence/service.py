"""The evidence seam of the gateway: check a call's gates before it is forwarded, record it after.

The gateway holds one :class:`EvidenceService` and calls, for each governed ``tools/call``:

1. :meth:`EvidenceService.check` with the tool, the first matching rule and the call's session
   identity, and blocks the call when the result has not ``passed``;
2. after forwarding, :meth:`EvidenceService.completed` with the call id and the upstream's
   JSON-RPC response (``None`` when the upstream failed), which records the call (so it can
   unlock ``requires`` and verify SDK evidence) and, on success, the rule's ``evidence.produces``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from helio_proxy.config.durations import seconds
from helio_proxy.config.policies import Rule
from helio_proxy.config.root import HelioConfig
from helio_proxy.evidence.allowlist import CurrentEvidenceIndex
from helio_proxy.evidence.gates import STORE_UNAVAILABLE, GateRequirements, GateResult, check_gates
from helio_proxy.evidence.model import Clock, to_ms
from helio_proxy.evidence.outcome import call_succeeded, result_digest
from helio_proxy.evidence.store import SessionStore, StoreCapacityError
from helio_proxy.session.identity import SessionIdentity
from helio_proxy.store.base import StoreError

log = logging.getLogger(__name__)


class EvidenceService:
    """Gate checks and call recording over one :class:`SessionStore`."""

    def __init__(
        self, store: SessionStore, config: Callable[[], HelioConfig], *, clock: Clock = time.time
    ) -> None:
        self.store = store
        self.index = CurrentEvidenceIndex(config)
        self._clock = clock

    async def check(
        self, tool_name: str, rule: Rule | None, identity: SessionIdentity, arguments: Any = None
    ) -> GateResult:
        """The gate result of a call of ``tool_name`` matched by ``rule`` (``None``: no rule matched).

        Every call should be checked, not only rule gates: SDK-declared prerequisites apply to
        any tool of the session.
        """
        requirements = GateRequirements.for_call(tool_name, rule, self.index.get().producers, arguments)
        if identity.session_id is None:
            return check_gates(requirements, None, to_ms(self._clock()))
        try:
            state = await self.store.snapshot(identity.session_id, history=False)
        except (StoreError, SQLAlchemyError) as exc:  # store-backed session state, database down
            log.warning("session %r: state could not be read: %s", identity.session_id, exc)
            return STORE_UNAVAILABLE
        return check_gates(requirements, state, to_ms(self._clock()))

    async def completed(
        self,
        tool_name: str,
        rule: Rule | None,
        identity: SessionIdentity,
        call_id: str,
        response: Any,
        arguments: Any = None,
    ) -> bool:
        """Record a forwarded call and, when it succeeded, the evidence ``rule`` produces.

        Unresolved calls are not recorded (nothing could be matched to them later). Returns
        ``False`` when the store was full or (store-backed session state) could not be written; the
        call is then simply not remembered, so later gates fail closed.
        """
        session_id = identity.session_id
        if session_id is None:
            return True
        succeeded = call_succeeded(response)
        try:
            await self.store.record_call(session_id, tool_name, call_id, succeeded, arguments=arguments)
            produces = rule.evidence if rule is not None else None
            if succeeded and produces is not None and produces.produces:
                await self.store.record_produced(
                    session_id,
                    produces.produces,
                    call_id,
                    result_digest(response),
                    seconds(produces.ttl),
                    tool_name,
                    arguments=arguments,
                )
        except StoreCapacityError as exc:
            log.warning("session %r: call %s not recorded: %s", session_id, call_id, exc)
            return False
        except (StoreError, SQLAlchemyError) as exc:  # store-backed session state, database down
            log.warning("session %r: call %s not recorded: the store failed: %s", session_id, call_id, exc)
            return False
        return True
