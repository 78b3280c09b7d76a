"""Building the upstream client a config entry asks for (``upstream.transport``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.gateway.exchange import Upstream
from helio_proxy.transports.upstream.legacy_sse import LegacySseUpstream
from helio_proxy.transports.upstream.streamable_http import StreamableHttpUpstream

UPSTREAM_TRANSPORTS: Final[dict[str, Callable[[UpstreamConfig], Upstream]]] = {
    "streamable-http": StreamableHttpUpstream,
    "sse": LegacySseUpstream,
}
"""``upstream.transport`` → the client class serving it."""


def build_upstream(config: UpstreamConfig) -> Upstream:
    """The client for one upstream (``KeyError`` for a transport this build cannot serve)."""
    return UPSTREAM_TRANSPORTS[config.transport](config)


__all__ = ["UPSTREAM_TRANSPORTS", "Upstream", "build_upstream"]
