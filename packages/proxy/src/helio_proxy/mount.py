"""One upstream and everything the proxy keeps per upstream.

The single ``upstream:`` form has one mount, served at ``/mcp`` and ``/sse``; the ``upstreams:``
list has one mount per entry, served at ``/mcp/<name>`` and ``/sse/<name>``. Each mount has its
own upstream client, gateway, tool baselines (keyed by :func:`baseline_key`) and primer; the
policy snapshot, audit trail, evidence store and enforcer are shared, so a rule, a limit or a
piece of evidence means the same thing on every mount (rules tell mounts apart with
``match.upstreams``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from helio_proxy.baselines import BaselineSync, DurableBaselineStore
from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.gateway import Gateway
from helio_proxy.gateway.exchange import Upstream
from helio_proxy.gateway.priming import AnnotationPrimer
from helio_proxy.policy import BaselineCache

MCP_BASE: Final = "/mcp"
SSE_BASE: Final = "/sse"
MESSAGES_BASE: Final = "/messages"


@dataclass
class Mount:
    """An upstream with its gateway, baselines and primer."""

    config: UpstreamConfig
    upstream: Upstream
    gateway: Gateway
    baseline_store: DurableBaselineStore
    baselines: BaselineCache
    baseline_sync: BaselineSync
    primer: AnnotationPrimer
    baselines_kept: int = 0
    """Tool baselines loaded from the store at startup."""
    primed_at_boot: int | None = None
    """Tool definitions listed at startup (``None``: the first ``tools/list`` did not succeed in time)."""

    @property
    def name(self) -> str | None:
        """The ``upstreams`` entry's name; ``None`` for the single ``upstream:`` form."""
        return self.config.name

    def path(self, base: str) -> str:
        """Where this mount is served under ``base`` (``/mcp`` → ``/mcp`` or ``/mcp/<name>``)."""
        return base if self.name is None else f"{base}/{self.name}"
