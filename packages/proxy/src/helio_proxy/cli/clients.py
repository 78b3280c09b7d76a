"""Where each MCP client keeps its server list, and the shape of its entries (``helio init --client``).

=================  ==========================================================  ==========  ===========
client             file (Linux; macOS)                                         servers in  remote key
=================  ==========================================================  ==========  ===========
``claude-desktop`` ``$XDG_CONFIG_HOME/Claude/claude_desktop_config.json``       mcpServers  url
                   (``~/.config/...``); ``~/Library/Application Support/Claude/...``
``claude-code``    ``~/.claude.json`` (user scope, and each ``projects.<dir>``) mcpServers  url + type
``cursor``         ``~/.cursor/mcp.json``                                        mcpServers  url
``vscode``         ``$XDG_CONFIG_HOME/Code/User/mcp.json``;                      servers     url + type
                   ``~/Library/Application Support/Code/User/mcp.json``
``windsurf``       ``~/.codeium/windsurf/mcp_config.json``                       mcpServers  serverUrl
=================  ==========================================================  ==========  ===========

A command (stdio) server is ``{"command", "args"?, "env"?, ...}`` in every client (VS Code and
Claude Code may add ``"type": "stdio"``); a remote one has the remote key, and ``"type": "sse"``
marks a legacy HTTP+SSE server where the client writes a type. Project-scope files
(``.cursor/mcp.json``, ``.vscode/mcp.json``, ``.mcp.json``) have the same shapes: pass them with
``--file``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final


@dataclass(frozen=True, slots=True)
class ClientFormat:
    """One client's config file and entry shape."""

    name: str
    title: str
    linux: str
    """Path on Linux; ``~`` is the home directory, ``$XDG_CONFIG_HOME`` defaults to ``~/.config``."""
    macos: str
    servers_key: str = "mcpServers"
    url_key: str = "url"
    nested_projects: bool = False
    """Claude Code also keeps servers per project under ``projects.<dir>.mcpServers``."""

    def path(self, platform: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
        """The file on ``platform`` (``sys.platform`` by default)."""
        env = os.environ if environ is None else environ
        template = self.macos if (platform or sys.platform) == "darwin" else self.linux
        home = env.get("HOME") or str(Path.home())
        xdg = env.get("XDG_CONFIG_HOME") or f"{home}/.config"
        return Path(template.replace("$XDG_CONFIG_HOME", xdg).replace("~", home, 1))


CLIENTS: Final = {
    c.name: c
    for c in (
        ClientFormat(
            "claude-desktop",
            "Claude Desktop",
            "$XDG_CONFIG_HOME/Claude/claude_desktop_config.json",
            "~/Library/Application Support/Claude/claude_desktop_config.json",
        ),
        ClientFormat("claude-code", "Claude Code", "~/.claude.json", "~/.claude.json", nested_projects=True),
        ClientFormat("cursor", "Cursor", "~/.cursor/mcp.json", "~/.cursor/mcp.json"),
        ClientFormat(
            "vscode",
            "VS Code",
            "$XDG_CONFIG_HOME/Code/User/mcp.json",
            "~/Library/Application Support/Code/User/mcp.json",
            servers_key="servers",
        ),
        ClientFormat(
            "windsurf",
            "Windsurf",
            "~/.codeium/windsurf/mcp_config.json",
            "~/.codeium/windsurf/mcp_config.json",
            url_key="serverUrl",
        ),
    )
}
"""Every client ``helio init --client`` knows, by its option value."""
