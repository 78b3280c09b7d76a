"""Config the schema accepts but this version cannot honour yet.

A governance proxy must never let a call through a control it does not run, so ``helio start``
refuses such a config outright (``blocking``), and ``helio validate`` says the same as a
warning. Settings that lose nothing when absent only draw a warning (``notices``).
"""

from __future__ import annotations

from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.charges import fallback_warnings


def blocking(config: HelioConfig) -> list[str]:
    """Settings that would leave calls ungoverned or unreachable: startup stops on them.

    Every section of the schema is enforced in this version, so nothing is refused today; the
    hook stays so that a future schema addition is refused until it is enforced.
    """
    del config
    return []


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
