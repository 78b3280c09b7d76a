"""The terminal side of ``helio init --client``: diff, confirmation, messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from helio_proxy.cli.clients import CLIENTS
from helio_proxy.cli.repoint import RepointError, apply, plan, undo


def _fail(error: RepointError) -> NoReturn:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def run_client_init(
    name: str, client_file: str | None, output: str, *, force: bool, yes: bool, dry_run: bool, restore: bool
) -> None:
    """``helio init --client NAME [...]`` (exits 1 on any error, or when the user declines)."""
    client = CLIENTS[name]
    path = Path(client_file).expanduser() if client_file else client.path()
    if restore:
        try:
            click.echo(undo(path))
        except RepointError as exc:
            _fail(exc)
        return
    try:
        found = plan(client, path, Path(output).expanduser())
    except RepointError as exc:
        _fail(exc)
    for server, why in found.skipped:
        click.echo(f"Skipping {server}: {why}", err=True)
    if not found.changes:
        click.echo(f"Nothing to change in {path}: every server already goes through Helio (or is skipped).")
        return
    click.echo(found.diff(), nl=False)
    for server in found.wrapped:
        click.echo(f"{server}: command server, will run under 'helio wrap -c {found.wrap_config}'")
    for server, mount in found.mounted:
        click.echo(f"{server}: remote server, will be upstream '{mount}' of {found.helio_config}")
    if found.helio_yaml is not None:
        click.echo(f"\n{found.helio_config} would be:\n{found.helio_yaml}")
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    if not yes and not click.confirm(f"Rewrite {path} (a backup is kept beside it)?", default=False):
        click.echo("Nothing written.", err=True)
        sys.exit(1)
    try:
        for line in apply(found, force=force):
            click.echo(line)
    except RepointError as exc:
        _fail(exc)
