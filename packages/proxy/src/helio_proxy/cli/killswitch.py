"""``helio kill`` and ``helio resume``: the kill switch, written straight to the store.

They open the store the config points at (creating it if no proxy has run yet, so a switch
engaged before the first start holds from that start on), apply the change in one transaction
with its ``kill_switch`` audit record, and publish it on the change bus: every proxy on the store
blocks (or serves again) within a second. No proxy needs to be running and no API secret is
needed: whoever can write the store can already change everything in it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from helio_proxy.cli.main import (
    _fail,  # pyright: ignore[reportPrivateUsage]
    _load,  # pyright: ignore[reportPrivateUsage]
    cli,
    config_option,
)
from helio_proxy.errors import HelioProxyError

_scope_options = [
    click.option("--upstream", "upstream", default=None, metavar="NAME", help="Only calls to this upstream."),
    click.option("--agent", "agent", default=None, metavar="ID", help="Only calls from this agent."),
    click.option("--by", "actor", default=None, metavar="NAME", help="Who (default: the OS user name)."),
]


def _with_scope_options(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_scope_options):
        command = option(command)
    return command


def _switch(
    config_path: str,
    engaged: bool,
    reason: str | None,
    upstream: str | None,
    agent: str | None,
    actor: str | None,
) -> None:
    from helio_proxy.audit.chain import load_private_key
    from helio_proxy.audit.redact import Redactor
    from helio_proxy.audit.rows import RowBuilder
    from helio_proxy.cli.tools import operator_name
    from helio_proxy.killswitch import ScopeError, Switch, switch_job
    from helio_proxy.killswitch.api import scope_of
    from helio_proxy.store import create_store, store_url
    from helio_proxy.store.base import time_text

    loaded = _load(config_path)
    config = loaded.config
    names = [u.name for u in config.upstream_list if u.name]
    if upstream is not None and upstream not in names:
        known = (
            ", ".join(names)
            if names
            else "none: the config has a single unnamed upstream (use no --upstream)"
        )
        click.echo(f"Error: no upstream {upstream!r} in {loaded.path} (upstreams: {known})", err=True)
        sys.exit(2)
    try:
        scope = scope_of(upstream, agent)
    except ScopeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    audit = config.audit
    try:
        signer = load_private_key(audit.signing_key) if audit.signing_key else None
        store = create_store(store_url(audit, config.store), durability="strict")
        store.open_sync()
    except HelioProxyError as exc:
        _fail(exc)
    who = actor or operator_name()
    change = Switch(
        scope=scope,
        engaged=engaged,
        actor=who,
        reason=reason,
        source="cli",
        at=time_text(datetime.now(UTC)),
        environment=config.environment,
        config_sha256=loaded.sha256,
    )
    rows = RowBuilder(Redactor(audit.redact), include_responses=audit.include_responses)
    try:
        changed = store.submit(switch_job(change, rows, chained=audit.hash_chain, signer=signer)).result()
    except Exception as exc:
        click.echo(f"Error: the kill switch could not be written to {store.description}: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close_sync()
    if not changed:
        state = "engaged" if engaged else "not engaged"
        click.echo(f"Kill switch ({scope}) was already {state}: nothing changed ({store.description})")
        return
    if engaged:
        why = f": {reason}" if reason else ""
        click.echo(
            f"Kill switch ENGAGED ({scope}) by {who}{why}. Every proxy on {store.description} answers "
            "tools/call with kill_switch within a second; 'helio resume' releases it."
        )
    else:
        click.echo(
            f"Kill switch released ({scope}) by {who}: proxies on {store.description} serve calls again."
        )


@cli.command()
@config_option
@click.option(
    "--reason", default=None, metavar="TEXT", help="Why (recorded in the audit trail, shown to agents)."
)
@_with_scope_options
def kill(
    config_path: str, reason: str | None, upstream: str | None, agent: str | None, actor: str | None
) -> None:
    """Engage the kill switch: every tools/call is blocked (kill_switch) on every proxy on the store.

    Without --upstream or --agent it stops every call; with one of them, only that upstream's or
    agent's calls. Calls held for approval are released with the same block. The state is kept in
    the store (it survives restarts) and the change is an audit record naming who and why.
    """
    _switch(config_path, True, reason, upstream, agent, actor)


@cli.command()
@config_option
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded in the audit trail).")
@_with_scope_options
def resume(
    config_path: str, reason: str | None, upstream: str | None, agent: str | None, actor: str | None
) -> None:
    """Release the kill switch for a scope (the one 'helio kill' engaged with the same options).

    Other engaged scopes stay engaged; 'helio status' and GET /api/kill-switch list them.
    """
    _switch(config_path, False, reason, upstream, agent, actor)
