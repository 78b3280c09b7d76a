"""Terminal operations: ``helio status``, ``helio audit tail``, ``helio approvals ...``, ``helio completion``.

Registered on the groups of :mod:`helio_proxy.cli.main` when the ``helio_proxy.cli`` package is
imported. Approvals go through the running proxy's operator API (so the decision is recorded
under the operator whose secret is in ``HELIO_API_SECRET``); status and tail read the store.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import click

from helio_proxy.cli.main import (
    _fail,  # pyright: ignore[reportPrivateUsage]
    _load,  # pyright: ignore[reportPrivateUsage]
    audit,
    cli,
    config_option,
    policy,
)
from helio_proxy.errors import HelioProxyError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from helio_proxy.audit.query import AuditFilter
    from helio_proxy.cli.operator_client import OperatorClient

FOLLOW_POLL_SECONDS: Final = 0.5
"""How often ``audit tail --follow`` asks the store for new records."""
TAIL_PAGE: Final = 1000
"""Most records one poll of ``audit tail --follow`` reads."""

_url_option = click.option(
    "--url",
    "base_url",
    default=None,
    metavar="URL",
    help="Base URL of the proxy's dashboard listener (default: from the config's dashboard section).",
)


@cli.command()
@config_option
def status(config_path: str) -> None:
    """Show the listeners, upstreams, rules, pending approvals, audit chain head and store.

    Each listener and upstream is probed from here; pending approvals and the chain head are read
    from the store. Exits 1 when a listener is down or an upstream unreachable.
    """
    from helio_proxy.cli.status import status_report

    report = status_report(_load(config_path))
    click.echo(report.render(), nl=False)
    if not report.healthy:
        sys.exit(1)


# -- audit tail ----------------------------------------------------------------------------------


def _tail_line(record: Mapping[str, Any]) -> str:
    stamp = str(record.get("timestamp") or "")[:23]
    kind = record.get("record_kind") or "tool_call"
    parts = [stamp, f"#{record['seq']}"]
    if kind == "tool_call":
        parts += [str(record.get("tool_name") or "-"), str(record.get("policy_decision") or "-")]
        if record.get("block_reason"):
            parts.append(str(record["block_reason"]))
        if record.get("matched_rule"):
            parts.append(f"rule={record['matched_rule']}")
        if record.get("session_id"):
            parts.append(f"session={record['session_id']}")
        if record.get("total_duration_ms") is not None:
            parts.append(f"{float(record['total_duration_ms']):.1f}ms")
    else:
        parts += [str(kind), str(record.get("tool_name") or ""), str(record.get("policy_decision") or "")]
    return "  ".join(part for part in parts if part)


def _emit(record: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":")))
    else:
        click.echo(_tail_line(record))


def _newer(conn: Connection, where: AuditFilter, seen: int) -> tuple[int, list[dict[str, Any]]]:
    """The matching records after ``seen`` up to the current head, and the new cursor.

    The cursor moves past records the filter leaves out, so they are not scanned again; it
    stops at the last record returned when a page is full, so none is skipped.
    """
    from helio_proxy.audit.query import after, last_seq

    head = last_seq(conn)
    fresh = after(conn, where, seen, upto=head, limit=TAIL_PAGE)
    return (int(fresh[-1]["seq"]) if len(fresh) == TAIL_PAGE else head), fresh


@audit.command("tail")
@config_option
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(0, 10_000),
    default=10,
    show_default=True,
    metavar="N",
    help="How many of the last records to print first.",
)
@click.option(
    "-F",
    "--follow",
    is_flag=True,
    help="Keep printing records as they are written (Ctrl+C stops). -F, not -f: -f is --force everywhere.",
)
@click.option("--tool", metavar="TEXT", help="Tool name contains this (case-insensitive).")
@click.option("--decision", metavar="DECISION", help="Policy decision (allow, deny, require_approval, ...).")
@click.option("--reason", metavar="REASON", help="Block reason (policy_denied, evidence_missing, ...).")
@click.option("--session", metavar="ID", help="Session id.")
@click.option(
    "--kind", "record_kind", metavar="KIND", help="Record kind (tool_call, drift_event, policy_reload, ...)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (every column).")
def audit_tail(
    config_path: str,
    count: int,
    follow: bool,
    tool: str | None,
    decision: str | None,
    reason: str | None,
    session: str | None,
    record_kind: str | None,
    as_json: bool,
) -> None:
    """Print the last records of the audit trail, oldest first; with -F, follow it live.

    Reads the store, so it follows every replica writing to one database, without the proxy's
    API secret.
    """
    from helio_proxy.audit.query import AuditFilter, fetch, last_seq
    from helio_proxy.audit.trail import open_existing_store

    loaded = _load(config_path)
    where = AuditFilter(tool=tool, decision=decision, reason=reason, session=session, record_kind=record_kind)
    try:
        store = open_existing_store(loaded)
    except HelioProxyError as exc:
        _fail(exc)
    try:
        seen = store.read_sync(last_seq)
        records = (
            store.read_sync(lambda conn: fetch(conn, where, limit=count, order="oldest")) if count else []
        )
        if records:
            seen = int(records[-1]["seq"])
        for record in records:
            _emit(record, as_json)
        if follow:
            click.echo(f"Following {store.description} (Ctrl+C to stop)", err=True)
        while follow:
            seen, fresh = store.read_sync(partial(_newer, where=where, seen=seen))
            for record in fresh:
                _emit(record, as_json)
            if not fresh:
                time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        store.close_sync()


# -- policy replay -------------------------------------------------------------------------------


@policy.command("replay")
@click.option(
    "-c",
    "--config",
    "config_path",
    default="helio.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The config to decide with (the new policy); its store holds the recorded calls.",
)
@click.option(
    "--since",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How far back: a duration (30m, 24h, 7d).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    metavar="text|json",
    help="A summary for people, or everything (each flipped call) as JSON.",
)
@click.option(
    "--show",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    metavar="N",
    help="Flipped calls listed in text output.",
)
def policy_replay(config_path: str, since: str, fmt: str, show: int) -> None:
    """Decide every audited call of the window again with -c's policy, forwarding nothing.

    Prints the decisions before (as recorded) and after, the calls that would flip, and the
    calls per rule. Edit a copy of helio.yaml, replay it, then apply it.
    """
    from datetime import UTC, datetime, timedelta

    from helio_proxy.audit.trail import open_existing_store
    from helio_proxy.cli.replay import render_text, replay
    from helio_proxy.config.durations import parse_duration

    try:
        window = parse_duration(since).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    loaded = _load(config_path)
    try:
        store = open_existing_store(loaded)
    except HelioProxyError as exc:
        _fail(exc)
    until = datetime.now(UTC)
    try:
        report = replay(loaded, store, until - timedelta(seconds=window), until)
    finally:
        store.close_sync()
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(report, show), nl=False)


# -- approvals -----------------------------------------------------------------------------------


@cli.group()
def approvals() -> None:
    """List and decide approval tickets through the running proxy's operator API.

    The secret is read from HELIO_API_SECRET (dashboard.api_secret, or a named operator's own
    secret: the decision is recorded under that operator's name).
    """


def _client(config_path: str, base_url: str | None) -> OperatorClient:
    from helio_proxy.cli.operator_client import OperatorApiError, OperatorClient, dashboard_url

    try:
        url = base_url or dashboard_url(_load(config_path).config)
        return OperatorClient.from_environment(url)
    except OperatorApiError as exc:
        _fail(exc)


def _ticket_line(ticket: Mapping[str, Any]) -> str:
    votes = f"{len(ticket.get('approvals') or [])}/{ticket.get('quorum', 1)}"
    rule = ticket.get("matched_rule") or "-"
    arguments = json.dumps(ticket.get("tool_input"), separators=(",", ":"), ensure_ascii=False)
    if len(arguments) > 60:
        arguments = arguments[:57] + "..."
    return "  ".join(
        [
            str(ticket["id"]),
            str(ticket["status"]),
            str(ticket["tool_name"]),
            arguments,
            f"rule={rule}",
            f"approvals={votes}",
            f"expires={str(ticket.get('timeout_at') or '-')[:19]}",
        ]
    )


@approvals.command("list")
@config_option
@_url_option
@click.option(
    "--status",
    default="pending",
    show_default=True,
    metavar="STATUS",
    help="Ticket status (pending, orphaned, approved, denied, timeout, ...), or 'all'.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 200),
    default=50,
    show_default=True,
    metavar="N",
    help="Most tickets to list (at most 200).",
)
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of one line per ticket.")
def approvals_list(config_path: str, base_url: str | None, status: str, limit: int, as_json: bool) -> None:
    """List approval tickets, newest first (pending ones by default)."""
    from helio_proxy.cli.operator_client import OperatorApiError

    client = _client(config_path, base_url)
    try:
        page = client.get("/api/approvals", status=None if status == "all" else status, limit=limit)
    except OperatorApiError as exc:
        _fail(exc)
    tickets: list[dict[str, Any]] = page["data"]
    if as_json:
        click.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    for ticket in tickets:
        click.echo(_ticket_line(ticket))
    shown = "" if status == "all" else f"{status} "
    click.echo(f"{len(tickets)} of {page['total']} {shown}tickets", err=True)


def _decide(config_path: str, base_url: str | None, ticket_id: str, verb: str, body: dict[str, Any]) -> None:
    from helio_proxy.cli.operator_client import OperatorApiError

    client = _client(config_path, base_url)
    try:
        answer = client.post(f"/api/approvals/{ticket_id}/{verb}", body)
    except OperatorApiError as exc:
        _fail(exc)
    ticket = answer["data"]
    click.echo(_ticket_line(ticket))
    resolved = f" by {ticket['resolved_by']}" if ticket.get("resolved_by") else ""
    click.echo(f"Ticket {ticket['id']} is now {ticket['status']}{resolved}", err=True)


@approvals.command("approve")
@click.argument("ticket_id")
@config_option
@_url_option
@click.option("--comment", default=None, metavar="TEXT", help="Recorded with the approval.")
def approvals_approve(ticket_id: str, config_path: str, base_url: str | None, comment: str | None) -> None:
    """Approve a held call (role approver); with a quorum, count one approval towards it."""
    _decide(config_path, base_url, ticket_id, "approve", {"comment": comment} if comment else {})


@approvals.command("deny")
@click.argument("ticket_id")
@config_option
@_url_option
@click.option("--reason", default=None, metavar="TEXT", help="Told to the agent and recorded.")
def approvals_deny(ticket_id: str, config_path: str, base_url: str | None, reason: str | None) -> None:
    """Deny a held call (role approver); one denial settles it."""
    _decide(config_path, base_url, ticket_id, "deny", {"reason": reason} if reason else {})


@approvals.command("break-glass")
@click.argument("ticket_id")
@config_option
@_url_option
@click.option(
    "--reason", required=True, metavar="TEXT", help="Why the quorum is bypassed (required, recorded)."
)
def approvals_break_glass(ticket_id: str, config_path: str, base_url: str | None, reason: str) -> None:
    """Release a held call without its quorum (role admin); the reason is recorded."""
    _decide(config_path, base_url, ticket_id, "break-glass", {"reason": reason})


# -- shell completion ----------------------------------------------------------------------------


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's own completion).

    \b
    bash: eval "$(helio completion bash)"   (e.g. in ~/.bashrc)
    zsh:  eval "$(helio completion zsh)"    (e.g. in ~/.zshrc)
    fish: helio completion fish > ~/.config/fish/completions/helio.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - the choices above are click's built-ins
        raise click.UsageError(f"no completion for {shell}")
    click.echo(completer(cli, {}, "helio", "_HELIO_COMPLETE").source())
