"""The kill switch: stop every ``tools/call`` (or one upstream's, or one agent's) on every proxy
sharing the store, within a second, until an operator resumes.

State lives in the store's ``kill_switch`` table; each proxy keeps it in memory (checked early on
every call, no store read) and rereads it when the change bus says it changed. A state that cannot
be read counts as engaged (fail closed). See ``docs/kill-switch.md``.
"""

from helio_proxy.killswitch.model import (
    GLOBAL,
    Engagement,
    KillState,
    ScopeError,
    agent_scope,
    kill_deny,
    parse_scope,
    upstream_scope,
)
from helio_proxy.killswitch.service import KillSwitch
from helio_proxy.killswitch.table import Switch, load_engaged, switch_job

__all__ = [
    "GLOBAL",
    "Engagement",
    "KillState",
    "KillSwitch",
    "ScopeError",
    "Switch",
    "agent_scope",
    "kill_deny",
    "load_engaged",
    "parse_scope",
    "switch_job",
    "upstream_scope",
]
