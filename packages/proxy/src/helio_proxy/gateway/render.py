"""The edge where decisions become JSON-RPC: block errors and dry-run results.

This is the only place a ``Deny`` turns into a wire message (HTTP 200, code ``-32001``).
"""

from __future__ import annotations

import json
from typing import Any, Final, cast

from helio_proxy.gateway import eras
from helio_proxy.gateway.call import ToolCall
from helio_proxy.gateway.exchange import JsonReply, error_reply
from helio_proxy.jsonrpc import POLICY_BLOCKED, dumps
from helio_proxy.policy import Decision, Deny, DryRun, block_feedback, simulation_report

MODERN_PROTOCOL: Final = eras.MODERN_PROTOCOL
"""From this protocol revision on, results carry ``resultType``."""


def block_reply(call: ToolCall, decision: Deny) -> JsonReply:
    """The structured self-repair error for a blocked call."""
    message, data = block_feedback(decision, call.name)
    return error_reply(call.request_id, POLICY_BLOCKED, message, data)


def _claims_modern(call: ToolCall) -> bool:
    version = call.inbound.headers.get("mcp-protocol-version", "")
    params = call.inbound.message.params or {}
    meta = params.get("_meta")
    if isinstance(meta, dict):
        claimed = cast(dict[str, Any], meta).get("io.modelcontextprotocol/protocolVersion")
        if isinstance(claimed, str):
            version = claimed
    return version >= MODERN_PROTOCOL


def dry_run_reply(call: ToolCall, decision: DryRun, enforced: Decision) -> JsonReply:
    """A successful result describing what would have happened; nothing was forwarded."""
    report = simulation_report(decision, enforced)
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": json.dumps(report, separators=(",", ":"))}],
        "isError": False,
    }
    if _claims_modern(call):
        result["resultType"] = "complete"
    payload = {"jsonrpc": "2.0", "id": call.request_id, "result": result}
    return JsonReply(200, dumps(payload), payload=payload)
