"""Command definitions for ``helio``."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from helio_proxy import __version__
from helio_proxy.cli.template import render
from helio_proxy.config import LoadedConfig, load_config
from helio_proxy.errors import HelioProxyError

DEFAULT_CONFIG = "helio.yaml"
config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Path to helio.yaml.",
)


def _fail(error: HelioProxyError) -> None:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def _load(path: str) -> LoadedConfig:
    try:
        return load_config(path)
    except HelioProxyError as exc:
        _fail(exc)
        raise AssertionError("unreachable") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Where to write.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing file.")
def init(output: str, force: bool) -> None:
    """Write a commented starting config with a fresh dashboard secret."""
    target = Path(output)
    if target.exists() and not force:
        click.echo(f"Error: {target} already exists; use -f to overwrite it", err=True)
        sys.exit(1)
    secret = secrets.token_hex(32)
    text = render(target.name, secret)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(target, flags, 0o600)  # the file holds a secret
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"Wrote {target} (mode 0600). Dashboard secret:\n  {secret}")
    click.echo(f"Next: edit upstream.url, then run: helio start -c {target}")


@cli.command()
@config_option
def validate(config_path: str) -> None:
    """Check a config file; print what it defines, or the first error (exit 1)."""
    loaded = _load(config_path)
    for warning in loaded.warnings:
        click.echo(f"Warning: {warning}", err=True)
    config = loaded.config
    click.echo(
        f"Config is valid: {config_path} ({len(config.policies.rules)} policy rules, {len(config.budgets)} budgets)"
    )


@cli.command()
@config_option
@click.option(
    "--no-hot-reload", is_flag=True, help="Do not watch the config file (overrides policies.hot_reload)."
)
def start(config_path: str, no_hot_reload: bool) -> None:
    """Run the proxy until SIGINT/SIGTERM."""
    from helio_proxy.app import HelioApp, run_app

    loaded = _load(config_path)
    try:
        run_app(HelioApp(loaded, hot_reload=not no_hot_reload))
    except HelioProxyError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@cli.command()
@click.option("--port", default=3000, show_default=True, help="Proxy port.")
@click.option("--upstream-port", default=3001, show_default=True, help="Port of the bundled demo MCP server.")
@click.option(
    "--json-responses", is_flag=True, help="Make the demo server answer JSON instead of SSE streams."
)
def demo(port: int, upstream_port: int, json_responses: bool) -> None:
    """Start the bundled demo MCP server and the proxy in front of it."""
    from helio_proxy.demo.runner import run_demo

    try:
        run_demo(port=port, upstream_port=upstream_port, json_responses=json_responses)
    except HelioProxyError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@cli.group()
def policy() -> None:
    """Work with policy rules."""


@policy.command("test")
@config_option
@click.option("--tool", "tool_name", required=True, help="Tool name of the simulated call.")
@click.option("--args", "args_json", default="{}", show_default=True, help="Call arguments as a JSON object.")
@click.option(
    "--annotations",
    "annotations_json",
    default=None,
    help="The tool's annotations as a JSON object (default: unknown tool, MCP defaults).",
)
@click.option("--session", "session_id", default=None, help="Session id of the simulated call.")
def policy_test(
    config_path: str, tool_name: str, args_json: str, annotations_json: str | None, session_id: str | None
) -> None:
    """Show what the policy decides for one call, and what the agent would get back."""
    from helio_proxy.cli.policy_test import PolicyTestInputError, explain

    loaded = _load(config_path)
    try:
        click.echo(explain(loaded, tool_name, args_json, annotations_json, session_id))
    except PolicyTestInputError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


def main() -> None:
    cli()
