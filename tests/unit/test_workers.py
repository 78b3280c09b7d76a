"""What ``helio start --workers N`` refuses, and how a worker learns its slot."""

from __future__ import annotations

import socket

import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.errors import StartupError
from helio_proxy.workers import WORKER_ENV, WORKERS_ENV, refusals, reserve_port, worker_count, worker_slot

BASE = (
    "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {api_secret: '" + "s" * 32 + "'}\n"
)


def test_a_plain_http_config_runs_on_several_workers() -> None:
    config = parse_config_text(
        BASE + "policies:\n  rules:\n    - {match: {tool: pay}, action: spend_limit, limits: "
        "{max_spend: {field: '$.a', limit: 5, currency: GBP, window: 1h}}}\n",
        env={},
    )
    assert refusals(config) == []


def test_evidence_and_dependency_gates_run_on_several_workers_with_session_state_in_the_store() -> None:
    gates = (
        "policies:\n  rules:\n"
        "    - {name: refund-needs-lookup, match: {tool: refund}, evidence: {requires: [order]}}\n"
        "    - {match: {tool: ship}, requires: [pay]}\n"
    )
    assert refusals(parse_config_text(BASE + gates, env={})) == []  # auto: the store on several workers
    assert refusals(parse_config_text(BASE + "store: {session_state: store}\n" + gates, env={})) == []


def test_evidence_and_dependency_gates_are_refused_with_session_state_in_memory() -> None:
    config = parse_config_text(
        BASE + "store: {session_state: memory}\npolicies:\n  rules:\n"
        "    - {name: refund-needs-lookup, match: {tool: refund}, evidence: {requires: [order]}}\n"
        "    - {match: {tool: ship}, requires: [pay]}\n",
        env={},
    )
    found = refusals(config)
    assert len(found) == 2
    assert found[0].startswith("policies.rules[0] ('refund-needs-lookup') is an evidence or dependency gate")
    assert found[1].startswith("policies.rules[1] is an evidence or dependency gate")


def test_a_stdio_upstream_is_refused() -> None:
    config = parse_config_text(
        BASE.replace("{url: 'http://127.0.0.1:9/mcp'}", "{url: 'stdio://x', transport: stdio, command: cat}"),
        env={},
    )
    assert ["stdio server" in line for line in refusals(config)] == [True]


def test_worker_count_is_the_supervisors_n_or_one() -> None:
    assert worker_count({}) == 1
    assert worker_count({WORKERS_ENV: "3"}) == 3
    assert worker_count({WORKERS_ENV: "0"}) == 1
    assert worker_count({WORKERS_ENV: "many"}) == 1


def test_worker_slot_reads_index_and_port() -> None:
    assert worker_slot({}) is None
    assert worker_slot({WORKER_ENV: "1:4321"}) == (1, 4321)


def test_the_reserved_port_takes_no_connections_and_workers_can_share_it() -> None:
    reserved = reserve_port("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):  # bound, not listening: nobody is answering yet
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        worker = socket.socket()
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))
        worker.listen()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        worker.close()
        plain = socket.socket()  # a listener without SO_REUSEPORT owns its port
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        try:
            with pytest.raises(StartupError, match="another process uses it"):
                reserve_port("127.0.0.1", plain.getsockname()[1])
        finally:
            plain.close()
    finally:
        reserved.close()
