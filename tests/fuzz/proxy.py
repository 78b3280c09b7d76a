"""The proxy the fuzz suite attacks: the real :class:`HelioApp` with every listener (MCP with
small JSON caps, operator API, sideband) in front of a real MCP upstream (official SDK), driven
in-process through its ASGI apps (no sockets on the attacked side, for speed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from helio_proxy.app import HelioApp
from tests.fuzz.strategies import CAPS
from tests.harness import mcp_upstream, proxy_config, run_proxy

API_SECRET: Final = "fuzz-operator-secret-0123456789abcdef"
SDK_TOKEN: Final = "fuzz-sideband-token-0123456789abcdef"
MAX_BODY: Final = 256 << 10

EXTRA: Final = f"""
listen:
  port: 0
  max_body_bytes: {MAX_BODY}
  max_json_depth: {CAPS.max_depth}
  max_string_length: {CAPS.max_string_length}
  max_array_length: {CAPS.max_array_length}
dashboard: {{enabled: true, port: 0, api_secret: '{API_SECRET}'}}
sdk: {{enabled: true, port: 0}}
policies:
  default: allow
  rules:
    - name: big-payments
      match: {{tool: create_payment, input: {{'$.amount': {{gt: 1000}}, '$.recipient': {{regex: '^[a-z]+$'}}}}}}
      action: deny
    - name: refunds-need-a-lookup
      match: {{tool: 'delete_*'}}
      evidence: {{requires: [user_checked]}}
"""


@asynccontextmanager
async def fuzz_proxy(tmp_path: Path) -> AsyncIterator[HelioApp]:
    """The proxy, started and ready, with its audit trail under ``tmp_path``."""
    config = proxy_config("UPSTREAM", audit_path=str(tmp_path / "audit.db"))
    config = config.replace("listen:\n  port: 0\n", "").replace("dashboard:\n  enabled: false\n", "") + EXTRA
    async with mcp_upstream(json_response=True) as upstream:
        async with run_proxy(
            config.replace("UPSTREAM", upstream), environ={"HELIO_SDK_TOKEN": SDK_TOKEN}
        ) as app:
            yield app
