"""The refund example's agent: tries a refund, is blocked, repairs what Helio says is missing, retries.

It talks to the proxy with the official MCP Python SDK and, unless ``--no-sdk``, to the proxy's
sideband with the Helio SDK. Both sides use one session id: every MCP request carries
``HelioContext.headers`` (``x-helio-session-id``), so the proxy files the agent's calls and the
evidence it marks under the same session.

The repair is driven by the block's machine-readable fields, not by parsing the text:

* each key in ``missing_evidence``/``expired_evidence`` names the tool whose result is the evidence
  (this example's convention: the key ``orders.lookup`` is an ``orders.lookup`` result). The agent
  calls that tool and, with the SDK, marks the result under the key, passing the ``call_id`` the
  proxy lists for that call under ``completed_tools`` in the session state, so the evidence is
  ``verified``. Without the SDK it just calls the tool (a rule with ``evidence.produces`` may record
  the evidence itself);
* each tool in ``missing_dependencies`` is called, successfully.

Exit status: 0 when the refund went through, 1 when it did not (still blocked, or a tool failed),
2 when the proxy or the sideband could not be used at all (or the arguments are wrong).

    python examples/refund/agent.py [--order-id A-1001] [--no-sdk] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from helio import HelioAuthError, HelioContext, HelioError, call_id_of

BLOCKED = -32001
"""The JSON-RPC error code of every Helio governance block (key on ``data.blocked`` and ``data.reason``)."""
SESSION_HEADER = "x-helio-session-id"
MAX_ATTEMPTS = 3
MCP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
"""The MCP SDK's own defaults; httpx2's 5 s default would cut off any tool call slower than that."""

EXIT_REFUNDED = 0
EXIT_NOT_REFUNDED = 1
EXIT_UNUSABLE = 2


class Reporter:
    """Prints each step: human-readable lines, or one JSON object per line with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def step(self, step: str, text: str, **fields: Any) -> None:
        if self.as_json:
            print(json.dumps({"step": step, **fields}, sort_keys=True), flush=True)
        else:
            print(text, flush=True)


def _call_text(tool: str, arguments: Mapping[str, Any]) -> str:
    return f"{tool}({', '.join(f'{k}={v}' for k, v in arguments.items())})"


class RefundAgent:
    """One agent session: an MCP client through the proxy, and (optionally) the Helio SDK."""

    def __init__(
        self, mcp: Client, ctx: HelioContext | None, report: Reporter, order_id: str, email: str | None
    ) -> None:
        self.mcp = mcp
        self.ctx = ctx
        self.report = report
        self.order_id = order_id
        self.email = email
        self.order: dict[str, Any] | None = None
        self.call_ids: dict[str, str | None] = {}
        """The proxy's call id of the latest successful call of each tool (from the result's ``_meta``)."""

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[str, Any]:
        """Call a tool; returns ``("ok", result)``, ``("blocked", error data)`` or ``("failed", text)``."""
        try:
            result = await self.mcp.call_tool(tool, arguments)
        except MCPError as exc:
            data: dict[str, Any] = exc.data if isinstance(exc.data, dict) else {}
            if exc.code == BLOCKED and data.get("blocked") is True:
                self._blocked(tool, arguments, exc.message, data)
                return "blocked", data
            self.report.step(
                "call",
                f"-> {_call_text(tool, arguments)}: error {exc.code}: {exc.message}",
                tool=tool,
                arguments=arguments,
                outcome="error",
                code=exc.code,
                message=exc.message,
            )
            return "failed", exc.message
        text = " ".join(getattr(block, "text", "") for block in result.content).strip()
        if result.is_error:
            self.report.step(
                "call",
                f"-> {_call_text(tool, arguments)}: tool error: {text}",
                tool=tool,
                arguments=arguments,
                outcome="tool_error",
                error=text,
            )
            return "failed", text
        value = result.structured_content if result.structured_content is not None else text
        self.call_ids[tool] = call_id_of(result)
        self.report.step(
            "call",
            f"-> {_call_text(tool, arguments)}: ok {json.dumps(value)}",
            tool=tool,
            arguments=arguments,
            outcome="ok",
            result=value,
        )
        return "ok", value

    def _blocked(self, tool: str, arguments: dict[str, Any], message: str, data: dict[str, Any]) -> None:
        lines = [f"-> {_call_text(tool, arguments)}: BLOCKED by Helio ({data.get('reason')})"]
        lines.append(f"     message:    {message}")
        for field in ("missing_evidence", "expired_evidence", "unverified_evidence", "missing_dependencies"):
            if data.get(field):
                lines.append(f"     {field}: {', '.join(data[field])}")
        lines.append(f"     suggestion: {data.get('suggestion')}")
        self.report.step(
            "call",
            "\n".join(lines),
            tool=tool,
            arguments=arguments,
            outcome="blocked",
            message=message,
            **{
                key: data.get(key)
                for key in (
                    "reason",
                    "rule",
                    "suggestion",
                    "retry_allowed",
                    "missing_evidence",
                    "expired_evidence",
                    "unverified_evidence",
                    "missing_dependencies",
                )
            },
        )

    async def arguments_for(self, tool: str) -> dict[str, Any] | None:
        """How this agent calls each prerequisite tool (``None``: it does not know the tool)."""
        if tool == "orders.lookup":
            return {"order_id": self.order_id}
        if tool == "customer.verify":
            email = self.email
            if email is None:  # ask the order who the customer is
                if self.order is None:
                    await self.run_tool("orders.lookup")
                email = self.order["customer"] if self.order else None
            return None if email is None else {"order_id": self.order_id, "email": email}
        return None

    async def run_tool(self, tool: str) -> tuple[str, Any]:
        arguments = await self.arguments_for(tool)
        if arguments is None:
            self.report.step(
                "call",
                f"-> {tool}: this agent does not know how to call it",
                tool=tool,
                outcome="unknown_tool",
            )
            return "failed", None
        outcome, value = await self.call(tool, arguments)
        if outcome == "ok" and tool == "orders.lookup" and isinstance(value, dict):
            self.order = value
        return outcome, value

    async def mark(self, key: str, tool: str, data: Any) -> bool:
        """Mark ``data`` as evidence ``key``, bound to the latest successful call of ``tool`` (its call
        id came back in the result's ``_meta``: no guessing from the session state)."""
        if self.ctx is None:
            return True  # nothing to mark with: a rule's evidence.produces may record it
        call_id = self.call_ids.get(tool)
        try:
            receipt = await self.ctx.amark_evidence(tool, key, data, call_id=call_id)
        except HelioAuthError:
            raise  # a wrong token never gets better: give up (exit 2)
        except HelioError as exc:
            self.report.step(
                "mark_evidence",
                f"-> mark_evidence {key!r}: failed: {exc}",
                evidence_key=key,
                tool_name=tool,
                ok=False,
                error=str(exc),
            )
            return False
        verified = "verified" if receipt.verified else "not verified"
        self.report.step(
            "mark_evidence",
            f"-> mark_evidence {key!r} (tool {tool}, call_id {call_id}): {verified}",
            evidence_key=key,
            tool_name=tool,
            call_id=call_id,
            verified=receipt.verified,
            ok=True,
        )
        return True

    async def repair(self, block: Mapping[str, Any]) -> bool:
        """Do what the block says is missing: call the tools, mark the evidence.

        Returns whether every step worked (a tool that failed leaves the gate shut).
        """
        evidence_keys: list[str] = [*block.get("missing_evidence", []), *block.get("expired_evidence", [])]
        tools = list(dict.fromkeys([*evidence_keys, *block.get("missing_dependencies", [])]))
        results: dict[str, Any] = {}
        for tool in tools:
            outcome, value = await self.run_tool(tool)
            if outcome != "ok":
                return False
            results[tool] = value
        marked = [await self.mark(key, key, results[key]) for key in dict.fromkeys(evidence_keys)]
        return all(marked)

    async def refund(self, amount: str | None) -> bool:
        arguments: dict[str, Any] = {"order_id": self.order_id}
        if amount is not None:
            arguments["amount"] = amount
        previous: tuple[Any, ...] | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome, value = await self.call("process_refund", arguments)
            if outcome == "ok":
                return True
            if outcome != "blocked" or not value.get("retry_allowed") or attempt == MAX_ATTEMPTS:
                return False
            unmet = tuple(
                tuple(value.get(field) or ())
                for field in ("missing_evidence", "expired_evidence", "missing_dependencies")
            )
            if unmet == previous:  # the last repair changed nothing: retrying would not either
                return False
            previous = unmet
            if not await self.repair(value):
                return False
        return False


async def run(args: argparse.Namespace, report: Reporter) -> int:
    session_id = args.session_id or uuid.uuid4().hex
    ctx = None if args.no_sdk else HelioContext(args.sideband_url, session_id)
    headers = ctx.headers if ctx is not None else {SESSION_HEADER: session_id}
    report.step(
        "start",
        f"Session {session_id}: refunding order {args.order_id} through {args.proxy_url}"
        + ("" if ctx is None else f" (Helio SDK sideband: {args.sideband_url})"),
        session_id=session_id,
        proxy_url=args.proxy_url,
        sideband_url=None if ctx is None else args.sideband_url,
        order_id=args.order_id,
    )
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=MCP_TIMEOUT) as http,
            Client(streamable_http_client(args.proxy_url, http_client=http), mode=args.mode) as mcp,
        ):
            agent = RefundAgent(mcp, ctx, report, args.order_id, args.email)
            refunded = await agent.refund(args.amount)
    finally:
        if ctx is not None:
            ctx.close()
    code = EXIT_REFUNDED if refunded else EXIT_NOT_REFUNDED
    report.step(
        "done",
        "Refund done." if refunded else "Refund NOT done.",
        refunded=refunded,
        exit_code=code,
    )
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Refund an order through Helio, repairing what the proxy says is missing."
    )
    parser.add_argument(
        "--proxy-url",
        default=os.environ.get("HELIO_MCP_URL") or "http://127.0.0.1:3000/mcp",
        help="the proxy's MCP endpoint (default: $HELIO_MCP_URL, else http://127.0.0.1:3000/mcp)",
    )
    parser.add_argument(
        "--sideband-url",
        default=os.environ.get("HELIO_SDK_URL") or "http://127.0.0.1:3200",
        help="the proxy's SDK sideband (default: $HELIO_SDK_URL, else http://127.0.0.1:3200; "
        "token: HELIO_SDK_TOKEN)",
    )
    parser.add_argument("--order-id", default="A-1001")
    parser.add_argument("--email", help="the customer's email for customer.verify (default: the order's)")
    parser.add_argument(
        "--amount", help='refund this much (a decimal string, e.g. "20.00"); default: in full'
    )
    parser.add_argument("--session-id", help="the session id to use (default: a fresh one)")
    parser.add_argument(
        "--no-sdk", action="store_true", help="no sideband, no evidence marking: only the MCP calls"
    )
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"], help="MCP client connect mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object per step")
    args = parser.parse_args(argv)
    report = Reporter(args.json)
    if not args.no_sdk and not os.environ.get("HELIO_SDK_TOKEN"):
        report.step(
            "error",
            "HELIO_SDK_TOKEN is not set: export the token `helio start` printed, or use --no-sdk.",
            error="HELIO_SDK_TOKEN is not set",
            exit_code=EXIT_UNUSABLE,
        )
        return EXIT_UNUSABLE
    try:
        return asyncio.run(run(args, report))
    except Exception as exc:  # the proxy is down, the URL or the token is wrong, ...
        cause = _innermost(exc)
        if isinstance(cause, HelioAuthError):
            text = "The sideband refused HELIO_SDK_TOKEN: export the token this `helio start` printed."
        else:
            text = f"Could not talk to the proxy: {type(cause).__name__}: {cause}"
        report.step("error", text, error=f"{type(cause).__name__}: {cause}", exit_code=EXIT_UNUSABLE)
        return EXIT_UNUSABLE


def _innermost(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from the MCP client's task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
