"""Durable tool baselines: the policy's :class:`~helio_proxy.policy.baselines.BaselineStore` on
the governance store (``tool_baselines``), the poll that takes up acceptances made elsewhere,
and the jobs ``helio tools list``/``accept`` run."""

from helio_proxy.baselines.durable import DurableBaselineStore
from helio_proxy.baselines.sync import BASELINE_POLL_SECONDS, BaselineSync
from helio_proxy.baselines.table import (
    BaselineError,
    StoredTool,
    accept_pending,
    baseline_key,
    load_tools,
)

__all__ = [
    "BASELINE_POLL_SECONDS",
    "BaselineError",
    "BaselineSync",
    "DurableBaselineStore",
    "StoredTool",
    "accept_pending",
    "baseline_key",
    "load_tools",
]
