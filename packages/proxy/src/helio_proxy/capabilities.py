"""What this build honours of a config.

``notices``: settings the schema accepts that this version honours only in part; startup and
``helio validate`` print each as a warning. Every control a call must pass is enforced; what is
listed there loses no governance (a key that falls back and says so).

``dashboard_ui_notice``: whether the dashboard UI can be served is a property of the installation
(its built assets), not of the config, so ``helio validate`` never mentions it; ``helio start``
refuses to start when the config enables the dashboard and the assets are absent (an embedder
that runs :class:`~helio_proxy.app.HelioApp` itself gets the one-line notice instead).
"""

from __future__ import annotations

from helio_proxy import console
from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.charges import fallback_warnings


def dashboard_ui_available() -> bool:
    """Whether this installation ships the dashboard UI's built assets."""
    return console.assets_available()


def dashboard_ui_notice(config: HelioConfig) -> str | None:
    """What an embedder that serves only the API hears when the config enables the dashboard but
    its UI is not installed (``helio start`` and ``helio demo`` refuse to start instead)."""
    if not config.dashboard.enabled or dashboard_ui_available():
        return None
    return (
        "not part of this build; the dashboard port serves the REST API (/api/*) and live events "
        "(/api/events) only"
    )


def notices(config: HelioConfig) -> list[str]:
    """Settings that are accepted but have no effect yet."""
    out: list[str] = []
    if config.policies.tool_revalidation.max_advertised_ttl is not None:
        out.append(
            "policies.tool_revalidation.max_advertised_ttl has no effect yet: ttlMs is relayed unchanged"
        )
    out.extend(fallback_warnings(config))
    return out
