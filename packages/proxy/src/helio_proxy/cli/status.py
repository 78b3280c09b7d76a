"""``helio status``: what a config's proxy is doing, seen from the operator's terminal.

Each line is checked from where the command runs: the listeners answer on their ports, each
upstream accepts a connection, the store opens. Rules come from the config file (what a running
proxy reloads to); pending approvals and the audit chain head come from the store, so every
replica on one database reports the same.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, func, select

from helio_proxy.cli.operator_client import connect_host, http_base
from helio_proxy.config import LoadedConfig
from helio_proxy.errors import HelioProxyError
from helio_proxy.killswitch import load_engaged
from helio_proxy.store import Store, create_store, store_url
from helio_proxy.store.sqlite import SqliteStore
from helio_proxy.store.tables import APPROVAL_TICKETS, AUDIT_CHAIN, AUDIT_RECORDS

PROBE_TIMEOUT: Final = 2.0
"""Seconds each listener or upstream probe may take."""

OPEN_TICKETS: Final = ("pending", "orphaned")
"""Ticket states still waiting for an operator's decision."""


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    value: str
    ok: bool = True


@dataclass
class StatusReport:
    lines: list[Line] = field(default_factory=list[Line])

    def add(self, label: str, value: str, ok: bool = True) -> None:
        self.lines.append(Line(label, value, ok))

    @property
    def healthy(self) -> bool:
        return all(line.ok for line in self.lines)

    def render(self) -> str:
        width = max(len(line.label) for line in self.lines) + 1
        return "\n".join(f"{(line.label + ':').ljust(width)} {line.value}" for line in self.lines) + "\n"


def _tcp(host: str, port: int) -> str | None:
    """``None`` when ``host:port`` accepts a connection, else why not."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _http_ok(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    return None if response.is_success else f"HTTP {response.status_code}"


def _listeners(loaded: LoadedConfig, report: StatusReport) -> None:
    config = loaded.config
    listen = config.listen
    base = http_base(listen.host, listen.port)
    problem = _http_ok(f"{base}/healthz")
    report.add(
        "MCP listener",
        f"{base}/mcp up" if problem is None else f"{base} DOWN ({problem}; start it: helio start)",
        problem is None,
    )
    dashboard = config.dashboard
    if dashboard.enabled:
        base = http_base(dashboard.host, dashboard.port)
        problem = _http_ok(f"{base}/api/health")
        report.add(
            "Dashboard API",
            f"{base}/api/ up" if problem is None else f"{base} DOWN ({problem})",
            problem is None,
        )
    else:
        report.add("Dashboard API", "disabled (dashboard.enabled: false)")
    sdk = config.sdk
    if sdk.enabled:
        problem = _tcp(sdk.host, sdk.port)
        where = http_base(sdk.host, sdk.port)
        report.add(
            "SDK sideband", f"{where} up" if problem is None else f"{where} DOWN ({problem})", problem is None
        )
    else:
        report.add("SDK sideband", "disabled (sdk.enabled: false)")


def _upstreams(loaded: LoadedConfig, report: StatusReport) -> None:
    for upstream in loaded.config.upstream_list:
        label = f"Upstream ({upstream.name})" if upstream.name else "Upstream"
        if upstream.transport == "stdio":
            report.add(label, f"{upstream.url} (stdio: a command the proxy starts; not probed)")
            continue
        parts = urlsplit(upstream.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        problem = _tcp(parts.hostname or "", port)
        state = "reachable" if problem is None else f"UNREACHABLE ({problem})"
        report.add(label, f"{upstream.url} ({upstream.transport}) {state}", problem is None)


def _store_facts(conn: Connection) -> tuple[int, int, int, str]:
    pending = conn.execute(
        select(func.count()).select_from(APPROVAL_TICKETS).where(APPROVAL_TICKETS.c.status.in_(OPEN_TICKETS))
    ).scalar_one()
    records = conn.execute(select(func.count()).select_from(AUDIT_RECORDS)).scalar_one()
    head = conn.execute(
        select(AUDIT_CHAIN.c.seq, AUDIT_CHAIN.c.head_hash).where(AUDIT_CHAIN.c.id == 1)
    ).first()
    seq, digest = (int(head.seq), str(head.head_hash)) if head is not None else (0, "")
    return int(pending), int(records), seq, digest


def _open(loaded: LoadedConfig) -> Store | None:
    config = loaded.config
    store = create_store(store_url(config.audit, config.store))
    if isinstance(store, SqliteStore) and not store.path.exists():
        return None
    store.open_sync()
    return store


def _store(loaded: LoadedConfig, report: StatusReport) -> None:
    try:
        store = _open(loaded)
    except HelioProxyError as exc:
        report.add("Store", f"UNAVAILABLE ({exc})", False)
        return
    if store is None:
        report.add("Kill switch", "off")
        report.add("Store", f"{loaded.config.audit.path} does not exist yet (the proxy creates it on start)")
        return
    try:
        pending, records, seq, digest = store.read_sync(_store_facts)
        engaged = store.read_sync(load_engaged)
    finally:
        store.close_sync()
    if engaged:
        scopes = ", ".join(
            f"{e.scope} by {e.actor or '?'}" + (f" ({e.reason})" if e.reason else "")
            for e in sorted(engaged.values(), key=lambda e: e.scope)
        )
        report.add("Kill switch", f"ENGAGED: {scopes} (release: helio resume)")
    else:
        report.add("Kill switch", "off")
    report.add("Pending approvals", f"{pending} (decide: helio approvals list)" if pending else "0")
    if seq:
        report.add("Audit chain head", f"record {seq}, hash {digest[:16]}… (check: helio audit verify)")
    else:
        report.add("Audit chain head", "empty (no chained records yet)")
    report.add("Store", f"{store.description}, {records} audit records")


def status_report(loaded: LoadedConfig) -> StatusReport:
    """Every line of ``helio status``; ``healthy`` is false when something is down or unreachable."""
    report = StatusReport()
    report.add("Config", str(loaded.path))
    _listeners(loaded, report)
    _upstreams(loaded, report)
    policies = loaded.config.policies
    shadow = f", {len(policies.shadow)} shadow" if policies.shadow else ""
    report.add("Rules", f"{len(policies.rules)} loaded (default: {policies.default}{shadow})")
    _store(loaded, report)
    return report
