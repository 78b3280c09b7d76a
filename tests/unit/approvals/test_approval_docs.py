"""docs/approvals.md cannot drift: its YAML loads, its receiver verifies real signatures, its
tables name every status and endpoint there is."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from helio_proxy.approvals import TicketStatus, approval_routes
from helio_proxy.approvals.channels.webhook import sign
from helio_proxy.config import parse_config_text

DOC = Path(__file__).resolve().parents[3] / "docs" / "approvals.md"
ENV = {
    "HELIO_API_SECRET": "s" * 32,
    "HELIO_WEBHOOK_SECRET": "w" * 32,
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": "signing",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("block", _blocks("yaml"))
def test_every_yaml_example_loads(block: str) -> None:
    head = "version: '1'\nupstream: {url: 'http://127.0.0.1:1/mcp'}\n"
    if "dashboard:" not in block:
        head += "dashboard: {api_secret: 'ssssssssssssssssssssssssssssssss'}\n"
    config = parse_config_text(head + block, source=str(DOC), env=ENV)
    assert config.approval.channels or config.policies.rules


def test_the_receiver_example_accepts_the_proxys_signatures_and_nothing_else() -> None:
    [receiver] = _blocks("python")
    namespace: dict[str, Any] = {"__name__": "docs_receiver"}
    exec(compile(receiver, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    valid = namespace["valid_signature"]
    body = b'{"event":"approval_requested","ticket":{}}'
    header = sign("k", int(time.time()), body)
    assert valid("k", header, body)
    assert not valid("k", header, body + b" ")
    assert not valid("other", header, body)
    assert not valid("k", sign("k", int(time.time()) - 600, body), body)
    assert not valid("k", None, body)


def test_every_status_and_endpoint_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for status in TicketStatus:
        assert f"| `{status.value}` |" in text
    for route in approval_routes(None):  # type: ignore[arg-type]  # only the paths are read
        shown = route.path.removeprefix("/api/approvals")
        assert f"`{route.method} /api/approvals{shown}" in text
