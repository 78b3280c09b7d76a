"""``helio init --client NAME``: each client's config rewritten through Helio, backed up, undone.

The fixtures beside this file are configs in each client's own shape (and its own formatting,
so "byte for byte" means something when they are restored).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helio_proxy.cli import cli
from helio_proxy.cli.clients import CLIENTS
from helio_proxy.cli.repoint import helio_command
from helio_proxy.cli.wrap import wrap_config
from helio_proxy.config import load_config

FIXTURES = Path(__file__).parent
LISTEN = "http://127.0.0.1:3000"

# client -> (fixture, key of the server list, {server: original command}, {server: (mount, rewritten url,
# original url)}, path of nested servers)
CASES: dict[str, dict[str, Any]] = {
    "claude-desktop": {
        "fixture": "claude_desktop_config.json",
        "commands": {
            "filesystem": ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Documents"],
            "weather": ["python", "-m", "weather_server"],
        },
        "remotes": {},
    },
    "claude-code": {
        "fixture": "claude.json",
        "commands": {"memory": ["npx", "-y", "@modelcontextprotocol/server-memory"]},
        "remotes": {
            "notion": ("notion", f"{LISTEN}/mcp/notion", "https://mcp.notion.com/mcp", "streamable-http"),
            "/home/me/app/asana": ("asana", f"{LISTEN}/sse/asana", "https://mcp.asana.com/sse", "sse"),
        },
    },
    "cursor": {
        "fixture": "cursor-mcp.json",
        "commands": {"playwright": ["npx", "@playwright/mcp@latest"]},
        "remotes": {
            "github": (
                "github",
                f"{LISTEN}/mcp/github",
                "https://api.githubcopilot.com/mcp/",
                "streamable-http",
            )
        },
    },
    "vscode": {
        "fixture": "vscode-mcp.json",
        "commands": {"memory": ["npx", "-y", "@modelcontextprotocol/server-memory"]},
        "remotes": {
            "GitHub MCP": (
                "github-mcp",
                f"{LISTEN}/mcp/github-mcp",
                "https://api.githubcopilot.com/mcp/",
                "streamable-http",
            )
        },
    },
    "windsurf": {
        "fixture": "windsurf_mcp_config.json",
        "commands": {"git": ["uvx", "mcp-server-git"]},
        "remotes": {
            "zapier": ("zapier", f"{LISTEN}/sse/zapier", "https://actions.zapier.com/mcp/KEY/sse", "sse")
        },
    },
}


def _copy(tmp_path: Path, fixture: str) -> Path:
    target = tmp_path / "client" / fixture
    target.parent.mkdir()
    target.write_bytes((FIXTURES / fixture).read_bytes())
    target.chmod(0o640)
    return target


def _indent(text: str) -> str | None:
    """The first indentation of the text (``None`` for JSON on one line)."""
    found = re.search(r"\n([ \t]+)\S", text)
    return found.group(1) if found else None


def _init(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["init", *args], input=input)


def _entry(document: dict[str, Any], client: str, server: str) -> dict[str, Any]:
    key = CLIENTS[client].servers_key
    if "/" in server:  # a Claude Code project's server: "<project dir>/<name>"
        directory, name = server.rsplit("/", 1)
        return document["projects"][directory][key][name]
    return document[key][server]


@pytest.mark.parametrize("client", sorted(CASES))
def test_each_client_is_rewritten_through_helio_backed_up_and_undone_byte_for_byte(
    tmp_path: Path, client: str
) -> None:
    case = CASES[client]
    path = _copy(tmp_path, case["fixture"])
    original = path.read_bytes()
    helio_yaml = tmp_path / "helio" / "helio.yaml"

    result = _init("--client", client, "--file", str(path), "-o", str(helio_yaml), "--yes")

    assert result.exit_code == 0, result.output
    backup = path.with_name(path.name + ".helio-backup")
    assert backup.read_bytes() == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    rewritten = json.loads(path.read_text())
    assert _indent(path.read_text()) == _indent(original.decode())  # the file's own style is kept
    wrap_yaml = helio_yaml.with_name("helio-wrap.yaml")
    for server, command in case["commands"].items():
        entry = _entry(rewritten, client, server)
        assert [entry["command"], *entry["args"]] == [
            *helio_command(),
            "wrap",
            "-c",
            str(wrap_yaml),
            "--",
            *command,
        ]
    for server, (mount, url, _, _) in case["remotes"].items():
        entry = _entry(rewritten, client, server)
        assert entry.get(CLIENTS[client].url_key, entry.get("url")) == url
        assert f"{server}: remote server, will be upstream '{mount}'" in result.stdout
    original_doc = json.loads(original)
    untouched = {k: v for k, v in original_doc.items() if k not in ("mcpServers", "servers", "projects")}
    assert {k: rewritten[k] for k in untouched} == untouched

    governed = wrap_config(["true"], str(wrap_yaml))
    assert governed.config.dashboard.enabled is False
    assert governed.config.audit.path == str(helio_yaml.with_name("helio-audit.db"))
    if case["remotes"]:
        loaded = load_config(helio_yaml)
        assert stat.S_IMODE(helio_yaml.stat().st_mode) == 0o600
        upstreams = {u.name: (u.url, u.transport) for u in loaded.config.upstream_list}
        assert upstreams == {mount: (source, kind) for mount, _, source, kind in case["remotes"].values()}
    else:
        assert not helio_yaml.exists()

    undone = _init("--client", client, "--file", str(path), "--undo")
    assert undone.exit_code == 0, undone.output
    assert path.read_bytes() == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not backup.exists()


def test_headers_other_than_authorization_move_to_the_upstream(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cursor-mcp.json")
    helio_yaml = tmp_path / "helio.yaml"
    assert _init("--client", "cursor", "--file", str(path), "-o", str(helio_yaml), "--yes").exit_code == 0
    entry = json.loads(path.read_text())["mcpServers"]["github"]
    assert entry["headers"] == {"Authorization": "Bearer gh-token"}
    [upstream] = load_config(helio_yaml).config.upstream_list
    assert upstream.headers == {"X-MCP-Toolsets": "repos,issues"}
    assert upstream.forward_authorization is True  # the client's token still reaches the server


def test_a_dry_run_shows_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cursor-mcp.json")
    original = path.read_bytes()
    result = _init("--client", "cursor", "--file", str(path), "-o", str(tmp_path / "h.yaml"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"--- {path}\n+++ {path} (through Helio)" in result.stdout
    assert f'+      "url": "{LISTEN}/mcp/github"' in result.stdout
    assert "Dry run: nothing written." in result.stdout
    assert path.read_bytes() == original
    assert sorted(p.name for p in path.parent.iterdir()) == ["cursor-mcp.json"]
    assert not (tmp_path / "h.yaml").exists()


def test_it_asks_before_writing_and_a_no_writes_nothing(tmp_path: Path) -> None:
    path = _copy(tmp_path, "windsurf_mcp_config.json")
    original = path.read_bytes()
    declined = _init("--client", "windsurf", "--file", str(path), "-o", str(tmp_path / "h.yaml"), input="n\n")
    assert declined.exit_code == 1
    assert "(a backup is kept beside it)? [y/N]" in declined.stdout
    assert path.read_bytes() == original
    assert not path.with_name(path.name + ".helio-backup").exists()
    accepted = _init("--client", "windsurf", "--file", str(path), "-o", str(tmp_path / "h.yaml"), input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(path.read_text())["mcpServers"]["zapier"]["serverUrl"] == f"{LISTEN}/sse/zapier"


def test_a_second_run_changes_nothing_and_keeps_the_first_backup(tmp_path: Path) -> None:
    path = _copy(tmp_path, "claude_desktop_config.json")
    original = path.read_bytes()
    args = ["--client", "claude-desktop", "--file", str(path), "-o", str(tmp_path / "h.yaml"), "--yes"]
    assert _init(*args).exit_code == 0
    rewritten = path.read_bytes()
    again = _init(*args)
    assert again.exit_code == 0
    assert "Nothing to change" in again.stdout
    assert "Skipping filesystem: already goes through Helio" in again.stderr
    assert path.read_bytes() == rewritten
    assert _init("--client", "claude-desktop", "--file", str(path), "--undo").exit_code == 0
    assert path.read_bytes() == original


def test_the_client_file_is_found_where_each_client_keeps_it(tmp_path: Path) -> None:
    env = {"HOME": "/home/ada"}
    linux = {name: str(client.path("linux", env)) for name, client in CLIENTS.items()}
    macos = {name: str(client.path("darwin", env)) for name, client in CLIENTS.items()}
    assert linux == {
        "claude-code": "/home/ada/.claude.json",
        "claude-desktop": "/home/ada/.config/Claude/claude_desktop_config.json",
        "cursor": "/home/ada/.cursor/mcp.json",
        "vscode": "/home/ada/.config/Code/User/mcp.json",
        "windsurf": "/home/ada/.codeium/windsurf/mcp_config.json",
    }
    assert (
        macos["claude-desktop"] == "/home/ada/Library/Application Support/Claude/claude_desktop_config.json"
    )
    assert macos["vscode"] == "/home/ada/Library/Application Support/Code/User/mcp.json"
    assert macos["cursor"] == linux["cursor"]
    xdg = CLIENTS["claude-desktop"].path("linux", {"HOME": "/home/ada", "XDG_CONFIG_HOME": "/cfg"})
    assert str(xdg) == "/cfg/Claude/claude_desktop_config.json"

    home = tmp_path / "home"
    (home / ".cursor").mkdir(parents=True)
    (home / ".cursor" / "mcp.json").write_bytes((FIXTURES / "cursor-mcp.json").read_bytes())
    found = CliRunner(env={"HOME": str(home), "XDG_CONFIG_HOME": None}).invoke(
        cli, ["init", "--client", "cursor", "-o", str(tmp_path / "h.yaml"), "--dry-run"]
    )
    assert found.exit_code == 0, found.output
    assert f"--- {home}/.cursor/mcp.json" in found.stdout


def test_errors_name_the_fix_and_write_nothing(tmp_path: Path) -> None:
    missing = _init("--client", "cursor", "--file", str(tmp_path / "none.json"), "--yes")
    assert missing.exit_code == 1
    assert "no Cursor config at" in missing.stderr
    commented = tmp_path / "mcp.json"
    commented.write_text('{\n  // my servers\n  "servers": {}\n}\n')
    jsonc = _init("--client", "vscode", "--file", str(commented), "--yes")
    assert jsonc.exit_code == 1
    assert "remove comments and trailing commas" in jsonc.stderr
    nothing = _init("--client", "vscode", "--file", str(commented), "--undo")
    assert nothing.exit_code == 1
    assert "nothing to undo" in nothing.stderr
    path = _copy(tmp_path, "cursor-mcp.json")
    taken = tmp_path / "mine.yaml"
    taken.write_text("keep me")
    refused = _init("--client", "cursor", "--file", str(path), "-o", str(taken), "--yes")
    assert refused.exit_code == 1
    assert "already exists: choose another path with -o, or --force" in refused.stderr
    assert taken.read_text() == "keep me"
    assert sorted(os.listdir(path.parent)) == ["cursor-mcp.json"]
    assert _init("--yes").exit_code == 2  # --yes without --client is bad usage


def test_force_replaces_an_existing_config_whole_and_private(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cursor-mcp.json")
    taken = tmp_path / "helio.yaml"
    taken.write_text("old: config\n")
    taken.chmod(0o644)
    result = _init("--client", "cursor", "--file", str(path), "-o", str(taken), "--yes", "-f")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(taken.stat().st_mode) == 0o600
    assert [u.name for u in load_config(taken).config.upstream_list] == ["github"]
