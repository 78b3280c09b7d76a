"""Rate limits, spend limits and cross-tool budgets, counted in the governance store.

See ``docs/limits.md``. The gateway reaches this package only through the
:class:`~helio_proxy.gateway.enforcement.LimitGate` protocol, which :class:`LimitsGate` implements.
"""

from helio_proxy.limits.charges import fallback_warnings
from helio_proxy.limits.gate import LedgerReservation, LimitsGate

__all__ = ["LedgerReservation", "LimitsGate", "fallback_warnings"]
