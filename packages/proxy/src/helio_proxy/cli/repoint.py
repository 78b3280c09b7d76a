"""``helio init --client NAME``: re-point an MCP client's servers through Helio, and back.

Each server in the client's file is rewritten so its calls pass through Helio:

* a command (stdio) server becomes ``helio wrap -c helio-wrap.yaml -- <its command> <its args>``
  (its ``env``, ``cwd`` and other keys are kept, so the server starts as before, under Helio);
* a remote server becomes an upstream of a generated ``helio.yaml``, mounted at ``/mcp/<name>``
  (``/sse/<name>`` for a legacy SSE server), and the client's entry points there. Its
  ``Authorization`` header stays with the client, and the upstream gets
  ``forward_authorization: true`` so the proxy relays it (it is not relayed by default); other
  static headers move to the upstream.

The original file is copied byte for byte to ``<file>.helio-backup`` before the first rewrite
(a later run keeps that first backup), and ``--undo`` puts it back. The rewritten file is JSON in
the original's indentation (spaces, a tab, or a single line); comments (JSONC) are not supported,
and a file that has any is refused before anything is written.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import yaml

from helio_proxy.cli.clients import ClientFormat
from helio_proxy.cli.private_file import write_private
from helio_proxy.errors import HelioProxyError

BACKUP_SUFFIX: Final = ".helio-backup"
WRAP_CONFIG_NAME: Final = "helio-wrap.yaml"
DEFAULT_LISTEN_PORT: Final = 3000
DEFAULT_DASHBOARD_PORT: Final = 3100
KEPT_HEADER: Final = "authorization"
"""The one header a client entry keeps: the proxy forwards it upstream itself."""


class RepointError(HelioProxyError):
    """The client file cannot be read or rewritten; the message says what to do."""


def helio_command() -> list[str]:
    """How a client should launch this installation's ``helio`` (absolute: clients have a thin PATH)."""
    script = Path(sys.executable).parent / "helio"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "helio_proxy"]


@dataclass
class Plan:
    """What re-pointing one client file would change."""

    client: ClientFormat
    path: Path
    original: bytes
    rewritten: str
    helio_config: Path
    helio_yaml: str | None
    """The generated config for the remote servers (``None``: there are none)."""
    wrap_config: Path
    wrap_yaml: str | None
    """The config ``helio wrap`` governs command servers with (``None``: none, or already there)."""
    wrapped: list[str] = field(default_factory=list[str])
    mounted: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """``(server, mount name)`` of each remote server."""
    skipped: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])

    @property
    def changes(self) -> bool:
        return bool(self.wrapped or self.mounted)

    def diff(self) -> str:
        before = self.original.decode("utf-8").splitlines(keepends=True)
        after = self.rewritten.splitlines(keepends=True)
        return "".join(difflib.unified_diff(before, after, str(self.path), f"{self.path} (through Helio)"))


def _load(path: Path, client: ClientFormat) -> tuple[bytes, dict[str, Any]]:
    if not path.is_file():
        raise RepointError(
            f"no {client.title} config at {path}: add a server in {client.title} first, or pass --file "
            "with the file to rewrite"
        )
    raw = path.read_bytes()
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RepointError(
            f"{path} is not plain JSON ({exc}); remove comments and trailing commas, then run again"
        ) from None
    if not isinstance(value, dict):
        raise RepointError(f"{path} must hold a JSON object")
    return raw, cast(dict[str, Any], value)


def _dump(document: dict[str, Any], original: bytes) -> str:
    """``document`` as JSON in the original's style: its indent (spaces or a tab), or one line."""
    text = original.decode("utf-8")
    indented = re.search(r"\n([ \t]+)\S", text)
    if indented is None:
        return json.dumps(document, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")
    unit = indented.group(1)
    indent: str | int = unit if unit.startswith("\t") else len(unit)
    return json.dumps(document, indent=indent, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")


def _mount_name(server: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_-]+", "-", server.lower()).strip("-_")[:60] or "server"
    if not base[0].isalnum():
        base = f"s{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _through_helio(entry: Mapping[str, Any], url: object, listen: str) -> bool:
    args = entry.get("args")
    if isinstance(args, list) and "wrap" in args:
        command = str(entry.get("command") or "")
        words = [str(a) for a in cast(list[Any], args)]
        if Path(command).name == "helio" or words[:2] == ["-m", "helio_proxy"]:
            return True
    return isinstance(url, str) and url.startswith(listen)


@dataclass
class _Rewriter:
    client: ClientFormat
    helio: list[str]
    wrap_config: Path
    listen: str
    plan: Plan
    upstreams: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    taken: set[str] = field(default_factory=set[str])

    def servers(self, servers: dict[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, entry in servers.items():
            label = f"{where}{name}"
            if not isinstance(entry, dict):
                out[name] = entry
                self.plan.skipped.append((label, "not an object"))
                continue
            out[name] = self.entry(label, cast(dict[str, Any], entry))
        return out

    def entry(self, label: str, entry: dict[str, Any]) -> dict[str, Any]:
        url = entry.get(self.client.url_key, entry.get("url"))
        if _through_helio(entry, url, self.listen):
            self.plan.skipped.append((label, "already goes through Helio"))
            return entry
        command = entry.get("command")
        if isinstance(command, str) and command:
            raw_args = entry.get("args")
            args = [str(a) for a in cast(list[Any], raw_args)] if isinstance(raw_args, list) else []
            new = dict(entry)
            new["command"] = self.helio[0]
            new["args"] = [*self.helio[1:], "wrap", "-c", str(self.wrap_config), "--", command, *args]
            self.plan.wrapped.append(label)
            return new
        if isinstance(url, str) and re.match(r"^https?://", url):
            return self.remote(label, entry, url)
        self.plan.skipped.append((label, "neither a command nor an http(s) URL"))
        return entry

    def remote(self, label: str, entry: dict[str, Any], url: str) -> dict[str, Any]:
        mount = _mount_name(label.rsplit("/", 1)[-1], self.taken)
        sse = (
            entry.get("type") == "sse" or entry.get("transport") == "sse" or url.rstrip("/").endswith("/sse")
        )
        upstream: dict[str, Any] = {
            "name": mount,
            "url": url,
            "transport": "sse" if sse else "streamable-http",
        }
        raw_headers = entry.get("headers")
        headers = cast(dict[str, Any], raw_headers) if isinstance(raw_headers, dict) else {}
        moved = {k: str(v) for k, v in headers.items() if k.lower() != KEPT_HEADER}
        if moved:
            upstream["headers"] = moved
        self.upstreams.append(upstream)
        new = dict(entry)
        key = self.client.url_key if self.client.url_key in entry else "url"
        new[key] = f"{self.listen}/{'sse' if sse else 'mcp'}/{mount}"
        kept = {k: v for k, v in headers.items() if k.lower() == KEPT_HEADER}
        if kept:
            new["headers"] = kept
            upstream["forward_authorization"] = True
        else:
            new.pop("headers", None)
        self.plan.mounted.append((label, mount))
        return new


def _helio_yaml(
    upstreams: list[dict[str, Any]], audit: Path, source: Path, client: ClientFormat, listen_port: int
) -> str:
    config: dict[str, Any] = {
        "version": "1",
        "upstreams": upstreams,
        "listen": {"host": "127.0.0.1", "port": listen_port},
        "policies": {"default": "allow", "rules": []},
        "audit": {"path": str(audit)},
        "dashboard": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": DEFAULT_DASHBOARD_PORT,
            "api_secret": secrets.token_hex(32),
        },
    }
    header = (
        f"# Generated by 'helio init --client {client.name}' for the remote servers of {source}.\n"
        "# Run it with: helio start -c THIS_FILE  (the client's entries now point at it).\n"
        "# Add policy rules under 'policies' (docs/policies.md); the dashboard secret is new.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _wrap_yaml(audit: Path, client: ClientFormat) -> str:
    config: dict[str, Any] = {
        "version": "1",
        "policies": {"default": "allow", "rules": []},
        "audit": {"path": str(audit)},
        "dashboard": {"enabled": False},
    }
    header = (
        f"# Generated by 'helio init --client {client.name}': what 'helio wrap' governs the client's\n"
        "# command servers with (each server's command replaces the upstream). Edit 'policies' here.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def plan(
    client: ClientFormat,
    path: Path,
    helio_config: Path,
    *,
    helio: list[str] | None = None,
    listen_port: int = DEFAULT_LISTEN_PORT,
) -> Plan:
    """What rewriting ``path`` would do (nothing is written)."""
    raw, document = _load(path, client)
    helio_config = helio_config.absolute()
    wrap_config = helio_config.with_name(WRAP_CONFIG_NAME)
    audit = helio_config.with_name("helio-audit.db")
    listen = f"http://127.0.0.1:{listen_port}"
    result = Plan(client, path, raw, "", helio_config, None, wrap_config, None)
    rewriter = _Rewriter(client, helio or helio_command(), wrap_config, listen, result)
    new = dict(document)
    servers = document.get(client.servers_key)
    if isinstance(servers, dict):
        new[client.servers_key] = rewriter.servers(cast(dict[str, Any], servers), "")
    projects = document.get("projects")
    if client.nested_projects and isinstance(projects, dict):
        rewritten: dict[str, Any] = {}
        for directory, project in cast(dict[str, Any], projects).items():
            settings = cast(dict[str, Any], project) if isinstance(project, dict) else None
            nested: object = settings.get(client.servers_key) if settings is not None else None
            if settings is not None and isinstance(nested, dict):
                nested_servers = cast(dict[str, Any], nested)
                project = {
                    **settings,
                    client.servers_key: rewriter.servers(nested_servers, f"{directory}/"),
                }
            rewritten[directory] = project
        new["projects"] = rewritten
    result.rewritten = _dump(new, raw)
    if rewriter.upstreams:
        result.helio_yaml = _helio_yaml(rewriter.upstreams, audit, path, client, listen_port)
    if result.wrapped and not wrap_config.exists():
        result.wrap_yaml = _wrap_yaml(audit, client)
    return result


def _write_private(path: Path, text: str) -> None:
    """Mode 0600 (``helio.yaml`` holds the dashboard secret), even over an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, keeping the file's mode."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def apply(plan: Plan, *, force: bool = False) -> list[str]:
    """Write the plan: the backup (first time only), the generated configs, the client file.

    Returns one line per file written. ``RepointError`` before anything is written when the
    generated ``helio.yaml`` would replace an existing file without ``force``.
    """
    if plan.helio_yaml is not None and plan.helio_config.exists() and not force:
        raise RepointError(
            f"{plan.helio_config} already exists: choose another path with -o, or --force to replace it"
        )
    done: list[str] = []
    backup = backup_path(plan.path)
    if backup.exists():
        done.append(f"Kept the earlier backup {backup} (the original before Helio)")
    else:
        shutil.copy2(plan.path, backup)
        done.append(f"Backed up {plan.path} to {backup}")
    if plan.helio_yaml is not None:
        _write_private(plan.helio_config, plan.helio_yaml)
        done.append(f"Wrote {plan.helio_config} (mode 0600): run 'helio start -c {plan.helio_config}'")
    if plan.wrap_yaml is not None:
        _write_private(plan.wrap_config, plan.wrap_yaml)
        done.append(f"Wrote {plan.wrap_config} (mode 0600): the policies for the command servers")
    _replace(plan.path, plan.rewritten.encode("utf-8"))
    done.append(f"Rewrote {plan.path}; restart {plan.client.title} to use it")
    return done


def undo(path: Path) -> str:
    """Put the backup back byte for byte and remove it; the line to print."""
    backup = backup_path(path)
    if not backup.is_file():
        raise RepointError(f"no backup at {backup}: nothing to undo ('helio init --client' writes one)")
    _replace(path, backup.read_bytes())
    os.chmod(path, backup.stat().st_mode & 0o7777)
    backup.unlink()
    return (
        f"Restored {path} from {backup} (generated helio.yaml / {WRAP_CONFIG_NAME} files are left in place)"
    )
