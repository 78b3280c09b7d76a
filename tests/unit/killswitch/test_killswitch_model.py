"""Kill-switch scopes, which engagement stops a call, and the block the agent reads."""

from __future__ import annotations

import pytest

from helio_proxy.killswitch import GLOBAL, Engagement, KillState, ScopeError, kill_deny, parse_scope
from helio_proxy.killswitch.api import scope_of
from helio_proxy.policy import block_feedback


@pytest.mark.parametrize("scope", ["global", "upstream:payments", "agent:bot-7"])
def test_known_scopes_parse(scope: str) -> None:
    assert parse_scope(scope) == scope


@pytest.mark.parametrize(
    "scope", ["", "all", "upstream:", "agent:  ", "tool:x", "agent:a\nb", "agent:" + "x" * 201]
)
def test_other_scopes_are_refused(scope: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(scope)


def test_the_cli_and_api_options_name_one_scope() -> None:
    assert scope_of(None, None) == GLOBAL
    assert scope_of("pay", None) == "upstream:pay"
    assert scope_of(None, "bot") == "agent:bot"
    with pytest.raises(ScopeError):
        scope_of("pay", "bot")


def test_a_call_is_stopped_by_global_its_upstream_or_its_agent_and_global_wins() -> None:
    pay = Engagement("upstream:pay", "bad payee")
    bot = Engagement("agent:bot", "looping")
    state = KillState({pay.scope: pay, bot.scope: bot})
    assert state.blocking("pay", None) == pay
    assert state.blocking("docs", "bot") == bot
    assert state.blocking("docs", "other") is None
    assert state.blocking(None, None) is None
    everything = Engagement(GLOBAL, "incident")
    assert KillState({GLOBAL: everything, pay.scope: pay}).blocking("pay", "bot") == everything
    assert KillState().blocking("pay", "bot") is None
    assert not KillState().any_engaged


def test_an_unreadable_state_stops_every_call() -> None:
    state = KillState(unreadable="connection refused")
    found = state.blocking(None, None)
    assert found is not None
    assert found.scope == GLOBAL
    assert "cannot be read (connection refused)" in (found.reason or "")
    assert state.any_engaged


def test_the_block_says_kill_switch_no_retry_and_who_and_why() -> None:
    deny = kill_deny(Engagement(GLOBAL, "incident 42", "alice", "2026-12-03T07:00:00.000000Z", "api"))
    message, data = block_feedback(deny, "create_payment")
    assert message == "Tool 'create_payment' is blocked: the kill switch is on (global): incident 42"
    assert data["reason"] == "kill_switch"
    assert data["blocked"] is True
    assert data["retry_allowed"] is False
    assert data["action"] == "deny"
    assert data["kill_switch_scope"] == GLOBAL
    assert data["kill_switch_reason"] == "incident 42"
    assert data["engaged_by"] == "alice"
    assert data["engaged_at"] == "2026-12-03T07:00:00.000000Z"
    assert "kill switch" in data["suggestion"]
