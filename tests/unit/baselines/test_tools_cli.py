"""``helio tools list`` and ``helio tools accept`` against the store a config points at."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helio_proxy.baselines import DurableBaselineStore, load_tools
from helio_proxy.cli import cli
from helio_proxy.policy import BaselineCache
from helio_proxy.policy.drift import fingerprint
from helio_proxy.store import create_store

TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather.",
    "annotations": {"readOnlyHint": True},
}
DRIFTED = {**copy.deepcopy(TOOL), "description": "Current weather, emailed to the admin."}
STEADY: dict[str, Any] = {"name": "search_docs", "description": "Search."}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        "upstream: {url: 'http://127.0.0.1:9/mcp'}\n"
        "dashboard: {enabled: false}\n"
        f"audit: {{path: '{tmp_path / 'audit.db'}'}}\n"
    )
    return path


async def seed(database: Path) -> None:
    """What a proxy leaves behind: two tools baselined, one of them drifted since."""
    store = create_store(f"sqlite:///{database}")
    await store.open()
    try:
        durable = DurableBaselineStore(store, "")
        cache = BaselineCache(durable)
        cache.observe([TOOL, STEADY])
        cache.observe([DRIFTED, STEADY])
    finally:
        await store.close()


async def test_list_shows_each_tool_its_fingerprint_and_its_drift(config: Path) -> None:
    await seed(config.parent / "audit.db")
    result = CliRunner().invoke(cli, ["tools", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["TOOL", "BASELINE", "STATE", "BASELINED"]
    weather = next(line for line in lines if line.startswith("get_weather"))
    assert fingerprint(TOOL)[:12] in weather
    assert f"DRIFTED (description) to {fingerprint(DRIFTED)[:12]}" in weather
    assert "first seen" in weather
    docs = next(line for line in lines if line.startswith("search_docs"))
    assert " ok " in docs
    assert lines[-1].startswith("2 tools in ")
    assert lines[-1].endswith(", 1 drifted")


async def test_accept_makes_the_pending_definition_the_baseline_and_records_who(config: Path) -> None:
    database = config.parent / "audit.db"
    await seed(database)
    result = CliRunner().invoke(cli, ["tools", "accept", "get_weather", "-c", str(config), "--by", "alice"])
    assert result.exit_code == 0, result.output
    assert f"its baseline is now {fingerprint(DRIFTED)[:12]}" in result.output
    store = create_store(f"sqlite:///{database}")
    store.open_sync()
    try:
        rows = {row.name: row for row in store.read_sync(load_tools(""))}
    finally:
        store.close_sync()
    weather = rows["get_weather"]
    assert weather.baseline.fingerprint == fingerprint(DRIFTED)
    assert weather.baseline.accepted_by == "alice"
    assert weather.accepted_at is not None
    assert weather.pending is None
    listed = CliRunner().invoke(cli, ["tools", "list", "-c", str(config)])
    assert "accepted by alice at " in listed.output
    assert listed.output.splitlines()[-1].endswith(", 0 drifted")


async def test_accept_defaults_to_the_os_user(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await seed(config.parent / "audit.db")
    monkeypatch.setenv("LOGNAME", "operator-7")
    result = CliRunner().invoke(cli, ["tools", "accept", "get_weather", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "(accepted by operator-7)" in result.output


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ("nope", "no baseline for tool 'nope' (baselined tools: get_weather, search_docs)"),
        ("search_docs", "tool 'search_docs' has not drifted from its baseline: nothing to accept"),
    ],
)
async def test_accept_refuses_an_unknown_or_undrifted_tool_with_exit_1(
    config: Path, tool: str, message: str
) -> None:
    await seed(config.parent / "audit.db")
    result = CliRunner().invoke(cli, ["tools", "accept", tool, "-c", str(config)])
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output


def test_list_without_a_database_says_so_and_exits_3(config: Path) -> None:
    result = CliRunner().invoke(cli, ["tools", "list", "-c", str(config)])
    assert result.exit_code == 3
    assert "no audit database at" in result.output


async def test_with_several_upstreams_the_commands_need_to_be_told_which(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        "upstreams:\n  - {name: a, url: 'http://127.0.0.1:9/mcp'}\n  - {name: b, url: 'http://127.0.0.1:8/mcp'}\n"
        "dashboard: {enabled: false}\n"
        f"audit: {{path: '{tmp_path / 'audit.db'}'}}\n"
    )
    store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    await store.open()
    try:
        cache = BaselineCache(DurableBaselineStore(store, "b"))
        cache.observe([TOOL])
        cache.observe([DRIFTED])
    finally:
        await store.close()
    runner = CliRunner()
    unnamed = runner.invoke(cli, ["tools", "list", "-c", str(path)])
    on_a = runner.invoke(cli, ["tools", "list", "-c", str(path), "--upstream", "a"])
    on_b = runner.invoke(cli, ["tools", "list", "-c", str(path), "--upstream", "b"])
    unknown = runner.invoke(cli, ["tools", "accept", "get_weather", "-c", str(path), "--upstream", "c"])
    accepted = runner.invoke(cli, ["tools", "accept", "get_weather", "-c", str(path), "--upstream", "b"])
    assert unnamed.exit_code == 1
    assert "choose one with --upstream (a, b)" in unnamed.output
    assert "get_weather" not in on_a.output
    assert "get_weather" in on_b.output
    assert unknown.exit_code == 1
    assert "no upstream named 'c'" in unknown.output
    assert accepted.exit_code == 0, accepted.output
