"""docs/hardening.md cannot drift: its YAML loads and its caps table holds the code's values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helio_proxy.approvals.slack_actions import MAX_CALLBACK_BYTES
from helio_proxy.config import parse_config_text
from helio_proxy.config.approval import ApprovalConfig
from helio_proxy.config.sections import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_STREAMS, SessionConfig
from helio_proxy.evidence.store import StoreLimits
from helio_proxy.jsonlimits import DEFAULT_MAX_ARRAY_LENGTH, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_STRING_LENGTH
from helio_proxy.jsonrpc import MAX_BATCH
from helio_proxy.operator.api import MAX_API_BODY
from helio_proxy.session.binding import MAX_BINDINGS
from helio_proxy.session.identity import MAX_SESSION_ID_LENGTH
from helio_proxy.sideband import MAX_BODY_BYTES
from helio_proxy.transports.downstream.sse import MAX_SSE_SESSIONS
from helio_proxy.transports.upstream.channel import DEFAULT_MAX_SESSIONS
from tests.fuzz.support import DEFAULT_INPUTS, RSS_CEILING_MIB

DOC = Path(__file__).resolve().parents[3] / "docs" / "hardening.md"
TEXT = DOC.read_text(encoding="utf-8")


def _row(first_cells: str) -> str:
    return next(line for line in TEXT.splitlines() if line.startswith(f"| {first_cells}"))


@pytest.mark.parametrize("block", re.findall(r"```yaml\n(.*?)```", TEXT, re.DOTALL))
def test_every_yaml_example_loads(block: str) -> None:
    config = parse_config_text(block, source=str(DOC), env={"HELIO_API_SECRET": "s" * 32})
    assert config.listen.max_json_depth == 16


def test_the_caps_table_holds_the_codes_defaults() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 4 << 20
    assert "| 4 MiB | `listen.max_body_bytes`" in _row(
        "MCP port (`/mcp`, `/messages`), `helio wrap` stdin | body size"
    )
    assert f"| {DEFAULT_MAX_JSON_DEPTH} | `listen.max_json_depth`" in TEXT
    assert DEFAULT_MAX_STRING_LENGTH == 1 << 20
    assert f"| 1 MiB ({DEFAULT_MAX_STRING_LENGTH:,}) | `listen.max_string_length`" in TEXT
    assert f"| {DEFAULT_MAX_ARRAY_LENGTH:,} | `listen.max_array_length`" in TEXT
    assert f"| messages in one batch | {MAX_BATCH} |" in TEXT
    assert MAX_API_BODY == MAX_BODY_BYTES == MAX_CALLBACK_BYTES == 1 << 20
    assert f"| {MAX_SESSION_ID_LENGTH} characters |" in TEXT
    limits = StoreLimits()
    caps = SessionConfig()
    assert (
        caps.max_sessions,
        caps.max_keys_per_session,
        caps.max_tools_per_session,
        caps.max_session_bytes,
        caps.max_total_bytes,
    ) == (
        limits.max_sessions,
        limits.max_keys_per_session,
        limits.max_tools_per_session,
        limits.max_session_bytes,
        limits.max_total_bytes,
    )
    assert (
        f"| open legacy SSE sessions, per mount (`listen.max_sse_sessions`) | {MAX_SSE_SESSIONS:,} |" in TEXT
    )
    assert f"per process over every mount (`listen.max_streams`) | {DEFAULT_MAX_STREAMS:,} |" in TEXT
    assert (
        f"per store over every proxy on it (`approval.max_pending`) | {ApprovalConfig().max_pending:,} |"
        in TEXT
    )
    assert f"(with `listen.auth`), per mount | {MAX_BINDINGS:,} |" in TEXT
    assert f"| upstream sessions on one stdio upstream | {DEFAULT_MAX_SESSIONS} |" in TEXT
    assert f"| evidence sessions held (`session.max_sessions`) | {limits.max_sessions:,} " in TEXT
    assert f"per session (`session.max_keys_per_session`) | {limits.max_keys_per_session} each |" in TEXT
    assert (
        f"| tool names remembered per session (`session.max_tools_per_session`) | {limits.max_tools_per_session:,} |"
        in TEXT
    )
    assert f"| completed calls listed per session | {limits.max_calls_kept:,} |" in TEXT
    assert limits.max_session_bytes == 4 << 20
    assert limits.max_total_bytes == 256 << 20


def test_the_fuzz_budget_and_ceiling_are_the_suites() -> None:
    assert f"runs {DEFAULT_INPUTS:,} inputs per surface" in TEXT
    assert RSS_CEILING_MIB == 1024
    assert "under **1 GiB**" in TEXT
