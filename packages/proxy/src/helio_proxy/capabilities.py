"""Settings the schema accepts that this version honours only in part: startup and ``helio
validate`` print each as a warning (``notices``). Every control a call must pass is enforced; what
is listed here loses no governance (a UI not served, a key that falls back and says so).
"""

from __future__ import annotations

from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.charges import fallback_warnings


def notices(config: HelioConfig) -> list[str]:
    """Settings that are accepted but have no effect yet."""
    out: list[str] = []
    if config.dashboard.enabled:
        out.append(
            "the dashboard UI is not part of this build; its port serves the REST API (/api/*) and "
            "live events (/api/events) only"
        )
    if config.policies.tool_revalidation.max_advertised_ttl is not None:
        out.append(
            "policies.tool_revalidation.max_advertised_ttl has no effect yet: ttlMs is relayed unchanged"
        )
    out.extend(fallback_warnings(config))
    return out
