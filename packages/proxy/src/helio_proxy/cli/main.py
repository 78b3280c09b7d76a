"""Command definitions for ``helio``."""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from helio_proxy import __version__
from helio_proxy.cli.clients import CLIENTS
from helio_proxy.cli.commands import HelioCommand, HelioGroup
from helio_proxy.cli.private_file import write_private
from helio_proxy.cli.template import render
from helio_proxy.config import LoadedConfig, load_config
from helio_proxy.errors import HelioProxyError, StartupError

if TYPE_CHECKING:
    from helio_proxy.store import Store

DEFAULT_CONFIG = "helio.yaml"
_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S"]


def _utc(moment: datetime | None) -> datetime | None:
    """Command-line times are UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None else None


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Path to helio.yaml.",
)
force_option = click.option(
    "-f", "--force", is_flag=True, help="Overwrite the output file if it exists (refused otherwise)."
)


def _fail(error: HelioProxyError) -> NoReturn:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def _show_upstream_logs() -> None:
    """Print the upstream's own lines (a stdio child's stderr) and its restarts on stderr."""
    from helio_proxy.telemetry.logs import StderrHandler  # as _configure_logs: not on every command's import

    logger = logging.getLogger("helio_proxy.upstream")
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        logger.addHandler(StderrHandler())
        logger.setLevel(logging.INFO)


def _configure_logs(loaded: LoadedConfig) -> None:
    """``log.format`` / ``log.level`` for the proxy's loggers, secrets scrubbed; the upstream's own
    lines (a stdio child's stderr) are shown through the same handler."""
    from helio_proxy.config.digest import secret_values
    from helio_proxy.telemetry.logs import configure_logging

    config = loaded.config
    configure_logging(config.log, secret_values(config), config.audit.redact)
    logging.getLogger("helio_proxy.upstream").setLevel(logging.INFO)


def _refuse_overwrite(target: Path, force: bool) -> None:
    """The one overwrite rule of every command that writes a file: an existing file needs -f."""
    if target.exists() and not force:
        click.echo(f"Error: {target} already exists; use -f (--force) to overwrite it", err=True)
        sys.exit(1)


def _load(path: str) -> LoadedConfig:
    try:
        return load_config(path)
    except HelioProxyError as exc:
        _fail(exc)


@click.group(cls=HelioGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="helio")
def cli() -> None:
    """Helio: an MCP governance proxy between AI agents and the MCP servers they call."""


@cli.command()
@click.option(
    "-o",
    "--output",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Where to write.",
)
@force_option
@click.option(
    "--client",
    type=click.Choice(sorted(CLIENTS)),
    default=None,
    metavar="NAME",
    help="Re-point this MCP client's servers through Helio instead: "
    + ", ".join(sorted(CLIENTS))
    + " (see docs/clients.md).",
)
@click.option(
    "--file",
    "client_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="With --client: the client config to rewrite (default: where the client keeps it).",
)
@click.option("-y", "--yes", is_flag=True, help="With --client: write without asking.")
@click.option("--dry-run", is_flag=True, help="With --client: show the changes, write nothing.")
@click.option("--undo", is_flag=True, help="With --client: restore the client config from its backup.")
def init(
    output: str,
    force: bool,
    client: str | None,
    client_file: str | None,
    yes: bool,
    dry_run: bool,
    undo: bool,
) -> None:
    """Write a commented starting config with a fresh dashboard secret.

    With --client NAME, rewrite that MCP client's config so each server goes through Helio:
    command servers run under 'helio wrap', remote servers become upstreams of the generated
    -o FILE (served at /mcp/<name>). Shows the diff and asks first; backs the file up beside it.
    """
    if client is not None:
        from helio_proxy.cli.repoint_command import run_client_init

        run_client_init(client, client_file, output, force=force, yes=yes, dry_run=dry_run, restore=undo)
        return
    if client_file or yes or dry_run or undo:
        raise click.UsageError("--file, --yes, --dry-run and --undo only apply with --client NAME")
    target = Path(output)
    _refuse_overwrite(target, force)
    secret = secrets.token_hex(32)
    text = render(target.name, secret)
    write_private(target, text)  # it holds a secret: 0600, even over an existing 0644 file
    click.echo(f"Wrote {target} (mode 0600). Dashboard secret:\n  {secret}")
    click.echo(f"Next: edit upstream.url, then run: helio start -c {target}")


@cli.command()
@click.option(
    "--hash",
    "hash_only",
    is_flag=True,
    help="Hash a secret you already have, read from stdin (or typed, hidden, at a terminal); "
    "print only its hash.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"secret": ..., "hash": ...} as JSON.')
def secret(hash_only: bool, as_json: bool) -> None:
    """Print a fresh random secret and its sha256:<hex> hash, for secret_hash settings.

    Give the secret to its owner (an operator logs in with it) and put only the hash in
    helio.yaml, e.g. dashboard.operators[].secret_hash. Output: two lines,
    "secret: ..." and "hash: sha256:...".
    """
    from helio_proxy.cli.secret import fresh_secret, hash_of

    if not hash_only:
        click.echo(fresh_secret().render(as_json=as_json))
        return
    text = click.prompt("Secret", hide_input=True, err=True) if sys.stdin.isatty() else sys.stdin.read()
    try:
        pair = hash_of(text)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(pair.render(as_json=as_json))


@cli.command()
@config_option
@click.option(
    "--strict", is_flag=True, help="Treat every warning as an error: exit 1 when there is any (for CI)."
)
def validate(config_path: str, strict: bool) -> None:
    """Check a config file; print what it defines, or the first error (exit 1).

    Warnings (rules that can never decide or be met, keys the action ignores, quoted numbers...)
    go to stderr with the file and line; with --strict any warning makes the exit code 1.
    """
    loaded = _load(config_path)
    from helio_proxy import capabilities

    warnings = [*loaded.warnings, *capabilities.notices(loaded.config)]
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    config = loaded.config
    if strict and warnings:
        click.echo(f"Error: {len(warnings)} warning(s) and --strict: {config_path} is not accepted", err=True)
        sys.exit(1)
    click.echo(
        f"Config is valid: {config_path} ({len(config.policies.rules)} policy rules, {len(config.budgets)} budgets)"
    )


@cli.command()
@config_option
@click.option(
    "--no-hot-reload", is_flag=True, help="Do not watch the config file (overrides policies.hot_reload)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Proxy processes serving the MCP port together (SO_REUSEPORT), sharing the store; "
    "see docs/performance.md#all-cores-workers.",
)
def start(config_path: str, no_hot_reload: bool, workers: int) -> None:
    """Run the proxy until SIGINT/SIGTERM."""
    from helio_proxy.app import HelioApp, run_app
    from helio_proxy.workers import supervise, worker_slot

    loaded = _load(config_path)
    from helio_proxy.transports.downstream.agent_auth import unauthenticated_exposure

    exposed = unauthenticated_exposure(loaded.config.listen)
    if exposed is not None:
        _fail(StartupError(exposed))  # before any worker is spawned
    if workers > 1 and worker_slot() is None:
        argv = ["start", "-c", config_path, *(["--no-hot-reload"] if no_hot_reload else [])]
        try:
            sys.exit(supervise(loaded.config, argv, workers))
        except HelioProxyError as exc:
            _fail(exc)
    _configure_logs(loaded)
    try:
        run_app(HelioApp(loaded, hot_reload=not no_hot_reload, require_console=True, worker=worker_slot()))
    except HelioProxyError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "-c",
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Config to govern with; its upstream is replaced by COMMAND (without COMMAND, its own "
    "upstream is governed). Default: allow every call, audit to ./helio-audit.db.",
)
@click.argument("command", nargs=-1, required=False, type=click.UNPROCESSED)
def wrap(config_path: str | None, command: tuple[str, ...]) -> None:
    """Serve MCP on stdin/stdout, governing the stdio MCP server started as COMMAND.

    For clients that launch MCP servers as commands (Claude Desktop and the like):

      helio wrap -c helio.yaml -- npx -y @modelcontextprotocol/server-filesystem /tmp

    Without COMMAND, the upstream in -c FILE is governed (a remote HTTP or SSE server):

      helio wrap -c remote.yaml

    Logs go to stderr; stdout carries only the protocol. Exits 0 when stdin closes, 3 when
    COMMAND cannot be started (or keeps dying), 1 for a config error, 2 with neither COMMAND
    nor -c.
    """
    from helio_proxy.cli.wrap import run_wrap, wrap_config

    if not command and config_path is None:
        raise click.UsageError("give the server's command after '--', or -c FILE whose upstream to govern")
    try:
        loaded = wrap_config(command, config_path)
    except HelioProxyError as exc:
        _fail(exc)
    _show_upstream_logs()
    try:
        code = run_wrap(loaded)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


@cli.command()
@click.option("--port", default=3000, show_default=True, metavar="PORT", help="Proxy port (MCP).")
@click.option(
    "--upstream-port",
    default=3001,
    show_default=True,
    metavar="PORT",
    help="Port of the bundled demo MCP server.",
)
@click.option(
    "--dashboard-port",
    default=3100,
    show_default=True,
    metavar="PORT",
    help="Port of the dashboard API (approvals).",
)
@click.option(
    "--sdk-port",
    default=3200,
    show_default=True,
    metavar="PORT",
    help="Port of the SDK sideband (evidence for agents).",
)
@click.option(
    "--json-responses", is_flag=True, help="Make the demo server answer JSON instead of SSE streams."
)
@click.option(
    "--no-traffic", is_flag=True, help="Do not send the scripted calls that give every console screen data."
)
def demo(
    port: int, upstream_port: int, dashboard_port: int, sdk_port: int, json_responses: bool, no_traffic: bool
) -> None:
    """Start the bundled demo MCP server and the proxy in front of it, with its dashboard API and SDK sideband."""
    from helio_proxy.demo.runner import run_demo

    try:
        run_demo(
            port=port,
            upstream_port=upstream_port,
            json_responses=json_responses,
            dashboard_port=dashboard_port,
            traffic=not no_traffic,
            sdk_port=sdk_port,
        )
    except HelioProxyError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


class _ExportCommand(HelioCommand):
    """``export -f csv`` meant ``--format csv`` before -f became --force everywhere: say so."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if not any(a == "-f" and b in FORMATS for a, b in itertools.pairwise(given)):
                raise
            hint = " (-f now means --force, as in every command; choose the format with --format)"
            raise click.UsageError(exc.format_message() + hint, ctx) from None


FORMATS = ("csv", "json")


@cli.command("export", cls=_ExportCommand)
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    metavar="csv|json",
    help="Output format.",
)
@click.option("--tool", metavar="TEXT", help="Tool name contains this (case-insensitive).")
@click.option(
    "--decision", metavar="DECISION", help="Policy decision (allow, deny, require_approval, rejected, ...)."
)
@click.option("--reason", metavar="REASON", help="Block reason (policy_denied, evidence_missing, ...).")
@click.option("--session", metavar="ID", help="Session id.")
@click.option(
    "--from",
    "since",
    type=click.DateTime(_TIME_FORMATS),
    metavar="TIME",
    help="Records at or after this time (UTC; 2026-05-01 or 2026-05-01T12:00:00).",
)
@click.option(
    "--to",
    "until",
    type=click.DateTime(_TIME_FORMATS),
    metavar="TIME",
    help="Records before this time (UTC).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    metavar="N",
    help="Most recent records to export (at most 10000), written oldest first.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), metavar="FILE", help="Write here instead of stdout."
)
@force_option
def export_command(
    config_path: str,
    fmt: str,
    tool: str | None,
    decision: str | None,
    reason: str | None,
    session: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    output: str | None,
    force: bool,
) -> None:
    """Export audit records as CSV or JSON, every column included."""
    from helio_proxy.audit.export import render
    from helio_proxy.audit.query import AuditFilter, fetch
    from helio_proxy.audit.trail import open_existing_store

    if output is not None:
        _refuse_overwrite(Path(output), force)
    loaded = _load(config_path)
    where = AuditFilter(
        tool=tool,
        decision=decision,
        reason=reason,
        session=session,
        since=_utc(since),
        until=_utc(until),
    )
    try:
        store = open_existing_store(loaded)
    except HelioProxyError as exc:
        _fail(exc)
    from helio_proxy.cli.progress import progress

    try:
        records = store.read_sync(lambda conn: fetch(conn, where, limit=limit, order="oldest"))
    finally:
        store.close_sync()
    with progress(len(records), "Exporting") as advance:

        def counted() -> Iterator[dict[str, Any]]:
            for record in records:
                yield record
                advance(1)

        text = render(counted(), "json" if fmt == "json" else "csv")
    if output is None:
        click.echo(text, nl=False)
        return
    write_private(Path(output), text, newline="")  # audit data stays private: 0600
    click.echo(f"Wrote {len(records)} records to {output} (mode 0600)", err=True)


@cli.group()
def audit() -> None:
    """Audit trail tools."""


@audit.command()
@config_option
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="Ed25519 public key PEM to check signatures with (default: derived from audit.signing_key).",
)
def verify(config_path: str, public_key: str | None) -> None:
    """Walk the hash chain; name the first broken or missing link (exit 1), or count the records."""
    from helio_proxy.audit.chain import load_public_key
    from helio_proxy.audit.trail import open_existing_store
    from helio_proxy.audit.verify import verify_chain

    loaded = _load(config_path)
    try:
        key_setting = public_key or loaded.config.audit.signing_key
        key = load_public_key(key_setting) if key_setting else None
        store = open_existing_store(loaded)
    except HelioProxyError as exc:
        _fail(exc)
    from helio_proxy.audit.verify import chain_length
    from helio_proxy.cli.progress import progress

    try:
        with progress(chain_length(store), "Verifying") as advance:
            report = verify_chain(store, key, advance)
    finally:
        store.close_sync()
    problem = report.problem
    if problem is not None:
        where = f"record {problem.record_id} (seq {problem.seq})" if problem.record_id else "chain head"
        click.echo(f"Audit chain BROKEN at {where}: {problem.kind}: {problem.detail}", err=True)
        click.echo(f"{report.verified} records verified before it.", err=True)
        sys.exit(1)
    signatures = f", {report.signed} signatures valid" if key is not None else ""
    click.echo(f"Audit chain OK: {report.verified} records verified{signatures} ({store.description})")


@cli.group()
def policy() -> None:
    """Work with policy rules."""


@policy.command("test")
@config_option
@click.option("--tool", "tool_name", required=True, metavar="NAME", help="Tool name of the simulated call.")
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="Call arguments as a JSON object.",
)
@click.option(
    "--annotations",
    "annotations_json",
    default=None,
    metavar="JSON",
    help="The tool's annotations as a JSON object, instead of its baseline in the store.",
)
@click.option(
    "--session",
    "session_id",
    default=None,
    metavar="ID",
    help="Session id of the simulated call: its evidence and calls are read from the store when "
    "store.session_state keeps them there (default: a session with no evidence and no calls yet).",
)
@click.option(
    "--upstream",
    "upstream_name",
    default=None,
    metavar="NAME",
    help="Which upstream the call goes to (default: the one whose baselines hold the tool).",
)
def policy_test(
    config_path: str,
    tool_name: str,
    args_json: str,
    annotations_json: str | None,
    session_id: str | None,
    upstream_name: str | None,
) -> None:
    """Show what the policy decides for one call, and what the agent would get back.

    The tool's annotations are the ones the proxy has baselined in the store (as the running
    proxy decides with them); a tool the store has never seen gets the MCP defaults
    (destructive, open-world). The output says which was used. Rate limits, spend limits and
    budgets are checked against the store's counters now, read only; a call needing approval is
    reported as held, with its channel. The last line, Outcome, is what the proxy would do.
    """
    from helio_proxy.cli.policy_test import (
        PolicyTestInputError,
        explain,
        given_annotations,
        open_store_if_any,
        stored_tool,
    )

    loaded = _load(config_path)
    try:
        store = open_store_if_any(loaded)
    except HelioProxyError as exc:
        _fail(exc)
    try:
        if annotations_json is not None:
            source = given_annotations(annotations_json, upstream_name)
        else:
            source = stored_tool(loaded, store, tool_name, upstream_name)
        click.echo(explain(loaded, tool_name, args_json, source, session_id, store))
    except PolicyTestInputError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except HelioProxyError as exc:
        _fail(exc)
    finally:
        if store is not None:
            store.close_sync()


@cli.group()
def tools() -> None:
    """Tool baselines: the definitions drift is measured against."""


def _open_store(loaded: LoadedConfig) -> Store:
    from helio_proxy.audit.trail import open_existing_store

    try:
        return open_existing_store(loaded)
    except HelioProxyError as exc:
        _fail(exc)


_upstream_option = click.option(
    "--upstream",
    "upstream_name",
    default=None,
    metavar="NAME",
    help="Which upstream (required with several 'upstreams').",
)


@tools.command("list")
@config_option
@_upstream_option
def tools_list(config_path: str, upstream_name: str | None) -> None:
    """List baselined tools, their drift and who accepted them.

    Each tool's baseline fingerprint (short), whether it drifted (the definition it drifted to,
    the aspects that changed, since when), and who accepted the baseline when.
    """
    from helio_proxy.cli.tools import list_tools, render_tools, upstream_key

    loaded = _load(config_path)
    try:
        key = upstream_key(loaded, upstream_name)
    except HelioProxyError as exc:
        _fail(exc)
    store = _open_store(loaded)
    try:
        found = list_tools(store, key)
    finally:
        store.close_sync()
    click.echo(render_tools(found, store.description), nl=False)


@tools.command("accept")
@click.argument("name")
@config_option
@click.option(
    "--by", "accepted_by", default=None, metavar="NAME", help="Who accepts (default: the OS user name)."
)
@_upstream_option
def tools_accept(name: str, config_path: str, accepted_by: str | None, upstream_name: str | None) -> None:
    """Accept a drifted tool's new definition.

    The definition the tool drifted to becomes its baseline; a running proxy on the same store
    takes it up within seconds and stops blocking the tool. Exits 1 when the tool is unknown or
    has not drifted.
    """
    from helio_proxy.cli.tools import accept_tool, operator_name, upstream_key

    loaded = _load(config_path)
    try:
        key = upstream_key(loaded, upstream_name)
    except HelioProxyError as exc:
        _fail(exc)
    store = _open_store(loaded)
    try:
        line = accept_tool(store, key, name, accepted_by or operator_name())
    except HelioProxyError as exc:
        _fail(exc)
    finally:
        store.close_sync()
    click.echo(line)


@cli.group()
def auth() -> None:
    """Upstream credentials the proxy holds (OAuth consent)."""


@auth.command("login")
@click.argument("upstream", required=False)
@config_option
@click.option("--no-browser", is_flag=True, help="Only print the authorization URL.")
def auth_login(upstream: str | None, config_path: str, no_browser: bool) -> None:
    """Authorize the proxy at an upstream's OAuth server (authorization code with PKCE).

    Prints the authorization URL (and opens it unless --no-browser), waits for the redirect on
    127.0.0.1, and stores the refresh token encrypted with the key in the credential's
    token_key_env (default HELIO_TOKEN_KEY). UPSTREAM is the upstream's name (optional with one).
    """
    from helio_proxy.cli.auth import run_login

    loaded = _load(config_path)
    try:
        line = run_login(
            loaded,
            upstream,
            show=lambda url: click.echo(f"Open this URL to authorize:\n{url}"),
            open_browser=not no_browser,
        )
    except HelioProxyError as exc:
        _fail(exc)
    click.echo(line)


def main() -> None:
    cli()
