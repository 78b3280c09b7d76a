"""Every tools/call through the running proxy leaves exactly one audit record, in both answer
forms (JSON and SSE) and both durability modes; the official MCP SDK is the upstream and a client."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.audit.verify import verify_chain
from helio_proxy.config import load_config
from helio_proxy.config.digest import config_digest
from helio_proxy.evidence.gates import CALL_ID_META_KEY
from helio_proxy.server import bind
from helio_proxy.store import Store, StoreError, create_store
from helio_proxy.store.sqlite import SqliteStore
from helio_proxy.store.testing import postgres_schema
from tests.harness import build_test_upstream, proxy_config, run_proxy, serve_asgi

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
SECRET = "sk-live-4f9c2d7e1b"


@asynccontextmanager
async def echo_upstream(*, json_response: bool) -> AsyncIterator[str]:
    """The test upstream plus an ``echo`` tool (to see what the audit keeps of a response)."""
    server = build_test_upstream()

    @server.tool()
    def echo(payload: dict[str, Any]) -> dict[str, Any]:
        """Returns its input."""
        return payload

    app = server.streamable_http_app(json_response=json_response, stateless_http=True)
    async with serve_asgi(app) as base:
        yield f"{base}/mcp"


def _config(upstream_url: str, audit_path: Path, audit_extra: str = "") -> str:
    return proxy_config(upstream_url, audit_path=str(audit_path), audit_extra=audit_extra)


async def _call(
    client: httpx.AsyncClient, url: str, request_id: int, params: dict[str, Any]
) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    response = await client.post(url, json=body, headers={**HEADERS, "x-helio-session-id": "sess-1"})
    if response.headers["content-type"].startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                message = json.loads(line[6:])
                if message.get("id") == request_id:
                    return message
        raise AssertionError(f"no answer in {response.text!r}")
    return response.json()


def _records(store: Store, **where: Any) -> list[dict[str, Any]]:
    return store.read_sync(lambda c: fetch(c, AuditFilter(**where), order="oldest"))


def _open(url: str) -> Store:
    store = create_store(url)
    store.open_sync()
    return store


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_each_tools_call_leaves_one_record_with_what_the_client_saw(
    json_response: bool, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    async with (
        echo_upstream(json_response=json_response) as upstream,
        run_proxy(_config(upstream, db)) as app,
    ):
        async with httpx.AsyncClient(timeout=10) as client:
            ok = await _call(client, app.mcp_url, 1, {"name": "get_weather", "arguments": {"city": "Oslo"}})
            tool_error = await _call(
                client, app.mcp_url, 2, {"name": "lookup_order", "arguments": {"order_id": "x"}}
            )
            nameless = await _call(client, app.mcp_url, 3, {"arguments": {}})
            listed = await client.post(
                app.mcp_url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, headers=HEADERS
            )
            assert listed.status_code == 200
    assert "result" in ok
    assert tool_error["result"]["isError"] is True
    assert nameless["error"]["data"]["reason"] == "missing_tool_name"
    store = _open(f"sqlite:///{db}")
    try:
        records = _records(store)
        assert [(r["tool_name"], r["policy_decision"], r["block_reason"], r["success"]) for r in records] == [
            ("get_weather", "allow", None, True),
            ("lookup_order", "allow", None, False),
            ("<nameless>", "rejected", "missing_tool_name", None),
        ]
        first = records[0]
        # The client saw the upstream's result plus the proxy's call id in _meta; the record keeps
        # the upstream's answer as it came.
        seen = dict(ok["result"])
        assert set(seen.pop("_meta")) == {CALL_ID_META_KEY}
        assert first["upstream_response"]["result"] == seen
        assert (first["session_id"], first["session_source"], first["upstream_http_status"]) == (
            "sess-1",
            "header",
            200,
        )
        assert first["metadata"] == {"request_id": 1}
        assert first["config_sha256"] == app.loaded.sha256 == config_digest(app.loaded.config)
        assert first["upstream_latency_ms"] > 0
        assert verify_chain(store).verified == 3
    finally:
        store.close_sync()


async def test_an_unreachable_upstream_is_recorded_as_a_failed_call(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    closed = bind("127.0.0.1", 0, "test")
    port = closed.getsockname()[1]
    closed.close()
    async with (
        run_proxy(_config(f"http://127.0.0.1:{port}/mcp", db)) as app,
        httpx.AsyncClient(timeout=10) as client,
    ):
        answer = await _call(client, app.mcp_url, 1, {"name": "get_weather", "arguments": {"city": "Oslo"}})
    assert answer["error"]["data"]["failure_reason"] == "connection_refused"
    store = _open(f"sqlite:///{db}")
    try:
        [record] = _records(store)
        assert record["success"] is False
        assert record["upstream_error"]["failure_reason"] == "connection_refused"
        assert record["upstream_http_status"] is None
    finally:
        store.close_sync()


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_in_strict_mode_the_record_is_committed_before_the_client_gets_the_answer(
    json_response: bool, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    reader = _open(f"sqlite:///{db}")
    try:
        config = _config("{upstream}", db, "  durability: strict\n")
        async with echo_upstream(json_response=json_response) as upstream:
            async with (
                run_proxy(config.replace("{upstream}", upstream)) as app,
                httpx.AsyncClient(timeout=10) as client,
            ):
                for request_id in range(1, 6):
                    await _call(
                        client,
                        app.mcp_url,
                        request_id,
                        {"name": "get_weather", "arguments": {"city": "Rome"}},
                    )
                    seen = [r["metadata"]["request_id"] for r in _records(reader)]
                    assert seen == list(range(1, request_id + 1))
    finally:
        reader.close_sync()


async def test_secrets_in_arguments_and_responses_never_reach_the_database_files(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with echo_upstream(json_response=False) as upstream, run_proxy(_config(upstream, db)) as app:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await _call(
                client,
                app.mcp_url,
                1,
                {"name": "echo", "arguments": {"payload": {"api_key": SECRET, "q": "w"}}},
            )
        assert SECRET in json.dumps(answer)  # the client still gets the upstream's answer unchanged
        await app.audit.writer.flush()
        store = app.audit.store
        assert isinstance(store, SqliteStore)
        files = {p.name: p for p in store.files()}
        assert set(files) == {"audit.db", "audit.db-wal", "audit.db-shm"}  # live WAL mode
        for path in files.values():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert SECRET.encode() not in path.read_bytes(), path
        assert b"[REDACTED]" in files["audit.db-wal"].read_bytes()  # the record is in the WAL
    checked = SqliteStore(f"sqlite:///{db}")
    checked.open_sync()
    try:
        [record] = _records(checked)
        assert record["tool_input"] == {"payload": {"api_key": "[REDACTED]", "q": "w"}}
        checked.checkpoint()
    finally:
        checked.close_sync()
    for path in (db, Path(f"{db}-wal")):
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), path


async def test_the_official_client_through_the_proxy_is_audited(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with echo_upstream(json_response=False) as upstream, run_proxy(_config(upstream, db)) as app:
        async with Client(app.mcp_url) as client:
            await client.call_tool("get_weather", {"city": "Paris"})
            await client.call_tool("build_report", {"steps": 2})
        assert (
            app.out.getvalue().count(f"Audit: {db} (retention: 90d, durability: batched, a writer thread)")
            == 1
        )  # type: ignore[attr-defined]
    store = _open(f"sqlite:///{db}")
    try:
        assert [r["tool_name"] for r in _records(store)] == ["get_weather", "build_report"]
    finally:
        store.close_sync()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_proxy_with_a_writer_process_records_every_call_redacted_and_chained(
    tmp_path: Path, backend: str
) -> None:
    """``audit.writer: process``: the official client's calls reach the store through the child,
    redacted with the config's own patterns, in one chain; stopping the proxy ends the child."""
    with contextlib.ExitStack() as stack:
        db = tmp_path / "audit.db"
        extra = ""
        url = f"sqlite:///{db}"
        if backend == "postgres":
            url = stack.enter_context(postgres_schema())
            extra = "store:\n  url: '" + url + "'\n"
        async with echo_upstream(json_response=False) as upstream:
            text = _config(upstream, db, "  writer: process\n  redact: ['^city$']\n") + extra
            async with run_proxy(text) as app:
                assert "a writer process)" in app.out.getvalue()  # type: ignore[attr-defined]
                sink = app.audit.writer.sink
                assert sink is not None
                assert sink.pid is not None
                async with Client(app.mcp_url) as client:
                    for city in ("Paris", "Lima", "Oslo"):
                        await client.call_tool("get_weather", {"city": city})
                    await client.call_tool("build_report", {"steps": 2})
            with pytest.raises(ProcessLookupError):
                os.kill(sink.pid, 0)  # ended with the proxy
        store = _open(url)
        try:
            records = _records(store)
            assert [r["tool_name"] for r in records] == ["get_weather"] * 3 + ["build_report"]
            assert [r["tool_input"] for r in records[:3]] == [{"city": "[REDACTED]"}] * 3
            assert records[3]["tool_input"] == {"steps": 2}
            assert verify_chain(store).ok
        finally:
            store.close_sync()


@pytest.mark.postgres
async def test_a_proxy_on_postgresql_records_calls_there(tmp_path: Path) -> None:
    with postgres_schema() as url:
        extra = "store:\n  url: '" + url + "'\n"
        async with echo_upstream(json_response=True) as upstream:
            text = _config(upstream, tmp_path / "unused.db") + extra
            async with run_proxy(text) as app, httpx.AsyncClient(timeout=10) as client:
                await _call(client, app.mcp_url, 1, {"name": "get_weather", "arguments": {"city": "Lima"}})
                assert "Audit: postgresql://" in app.out.getvalue()  # type: ignore[attr-defined]
        assert not (tmp_path / "unused.db").exists()
        store = _open(url)
        try:
            [record] = _records(store)
            assert record["tool_name"] == "get_weather"
            assert verify_chain(store).ok
        finally:
            store.close_sync()


async def test_a_store_that_cannot_be_opened_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    # Port 1 (tcpmux) has no listener here: a freed ephemeral port can be taken by another test's
    # server meanwhile, and a connect that is accepted but never answered hung this test under load.
    port = 1
    text = _config("http://127.0.0.1:9/mcp", tmp_path / "unused.db") + (
        f"store:\n  url: 'postgresql://helio@127.0.0.1:{port}/helio'\n"
    )
    with pytest.raises(StoreError, match=rf"cannot open the store at postgresql://127\.0\.0\.1:{port}: "):
        async with run_proxy(text):
            pass


async def test_records_carry_the_hash_of_the_config_in_force_before_and_after_a_reload(
    tmp_path: Path,
) -> None:
    """Issue 22 point 12: the hash on a record is of the config in force (it was the boot file's)."""
    db = tmp_path / "audit.db"
    path = tmp_path / "helio.yaml"
    async with echo_upstream(json_response=True) as upstream:
        path.write_text(_config(upstream, db))
        async with run_proxy(load_config(path)) as app, httpx.AsyncClient(timeout=10) as client:
            booted = app.loaded.sha256
            await _call(client, app.mcp_url, 1, {"name": "get_weather", "arguments": {"city": "Oslo"}})
            assert app.watcher is not None
            path.write_text(_config(upstream, db) + "environment: staging\n")
            assert app.watcher.apply().applied
            assert app.snapshots.current.loaded.sha256 == booted  # restart-only: not in force yet
            rule = "policies:\n  rules:\n    - {name: no-deletes, match: {tool: delete_user}, action: deny}\n"
            path.write_text(_config(upstream, db) + rule)
            assert app.watcher.apply().applied
            reloaded = app.snapshots.current.loaded.sha256
            await _call(client, app.mcp_url, 2, {"name": "get_weather", "arguments": {"city": "Oslo"}})
    store = _open(f"sqlite:///{db}")
    try:
        hashes = [r["config_sha256"] for r in _records(store) if r["record_kind"] == "tool_call"]
    finally:
        store.close_sync()
    assert booted != reloaded
    assert hashes == [booted, reloaded]


async def test_in_strict_mode_calls_are_refused_with_audit_unavailable_while_records_cannot_be_written(
    tmp_path: Path,
) -> None:
    """Strict durability: once a batch fails (audit_records is gone), calls are not forwarded
    (``audit_unavailable``, retry allowed); when the table is back, a blocked call's own record
    commits and the next call is forwarded again."""
    db = tmp_path / "audit.db"
    config = _config("{upstream}", db, "  durability: strict\n")
    weather = {"name": "get_weather", "arguments": {"city": "Rome"}}
    async with echo_upstream(json_response=True) as upstream:
        async with (
            run_proxy(config.replace("{upstream}", upstream)) as app,
            httpx.AsyncClient(timeout=10) as client,
        ):
            app.audit.writer.retry_delays = (0.05,)  # one quick retry instead of 0.2 s + 1 s + 3 s
            assert "result" in await _call(client, app.mcp_url, 1, weather)
            database = sqlite3.connect(db, isolation_level=None)
            try:
                database.execute("ALTER TABLE audit_records RENAME TO audit_records_away")
                lost = await _call(client, app.mcp_url, 2, weather)  # forwarded; its record fails
                refused = await _call(client, app.mcp_url, 3, weather)
                database.execute("ALTER TABLE audit_records_away RENAME TO audit_records")
            finally:
                database.close()
            # Call 3's refusal record went to the store after its answer, and is retried 50 ms
            # after it failed: call 4 is refused too while no batch has committed, and forwarded
            # once call 3's record has (its retry landing after the table is back, or its first
            # attempt coming after the rename on a busy machine).
            again = await _call(client, app.mcp_url, 4, weather)
            await app.audit.writer.flush()  # a refusal's record commits after its answer
            assert app.audit.writer.failure is None
            back = await _call(client, app.mcp_url, 5, weather)
    assert "result" in lost
    data = refused["error"]["data"]
    assert (data["reason"], data["retry_allowed"]) == ("audit_unavailable", True)
    assert "result" in back
    reader = _open(f"sqlite:///{db}")
    try:
        kept = [(r["metadata"]["request_id"], r["block_reason"]) for r in _records(reader)]
    finally:
        reader.close_sync()
    # Call 2's record is lost (the store failed under it). What clears the failure is a refused
    # call's own record committing once the table is back.
    assert kept[0] == (1, None)
    assert kept[-1] == (5, None)
    if "error" in again:
        data = again["error"]["data"]
        assert (data["reason"], data["retry_allowed"]) == ("audit_unavailable", True)
        assert (4, "audit_unavailable") in kept
        assert set(kept[1:-1]) <= {(3, "audit_unavailable"), (4, "audit_unavailable")}
    else:
        assert "result" in again
        assert kept[1:-1] == [(3, "audit_unavailable"), (4, None)]
