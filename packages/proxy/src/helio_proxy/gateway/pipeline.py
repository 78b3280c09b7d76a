"""The gateway: one place every agent message passes through.

Only ``tools/call`` is governed; every other request, notification and response is relayed
unchanged. :meth:`Gateway.tools_call` is the seam where policy, evidence, approvals, limits and
audit plug in, in that order, around the forward.
"""

from __future__ import annotations

import dataclasses

from helio_proxy.audit import Auditor, CallAudit
from helio_proxy.errors import UpstreamError
from helio_proxy.gateway.call import InvalidToolCall, ToolCall
from helio_proxy.gateway.exchange import EmptyReply, Inbound, JsonReply, Reply, StreamReply, error_reply
from helio_proxy.gateway.relay import ResponseObserver, relay_request, upstream_failure
from helio_proxy.jsonrpc import INVALID_PARAMS, Kind
from helio_proxy.transports.upstream.streamable_http import StreamableHttpUpstream


class Gateway:
    """Routes agent messages to the upstream, governing tool calls on the way."""

    def __init__(self, upstream: StreamableHttpUpstream, auditor: Auditor | None = None) -> None:
        self.upstream = upstream
        self.auditor = auditor or Auditor(None)

    async def post(self, inbound: Inbound) -> Reply:
        """Handle one POSTed JSON-RPC message."""
        message = inbound.message
        if message.kind is not Kind.REQUEST:
            return await self._forward_one_way(inbound)
        if message.method == "tools/call":
            return await self.tools_call(inbound)
        return await self.forward(inbound)

    async def tools_call(self, inbound: Inbound) -> Reply:
        """The governed path for one ``tools/call``."""
        audit = self.auditor.begin(inbound.message.params, inbound.message.id, inbound.headers)
        try:
            call = ToolCall.from_inbound(inbound)
        except InvalidToolCall as exc:
            audit.reject(exc.reason)
            return await _settled(
                audit, error_reply(inbound.message.id, INVALID_PARAMS, str(exc), {"reason": exc.reason})
            )
        return await _settled(audit, await self.forward(call.inbound, observe=audit.forwarding()))

    async def forward(self, inbound: Inbound, observe: ResponseObserver | None = None) -> Reply:
        """Send a request upstream and relay its answer (JSON or SSE) to the agent."""
        request_id = inbound.message.id
        assert request_id is not None
        try:
            response = await self.upstream.post(inbound.headers, inbound.message.raw)
        except UpstreamError as exc:
            if observe:
                observe(None, exc)
            return upstream_failure(request_id, exc)
        return await relay_request(response, request_id, accepts_sse=inbound.accepts_sse, observe=observe)

    async def _forward_one_way(self, inbound: Inbound) -> Reply:
        """Notifications and client responses: 202 once the upstream has taken them."""
        try:
            response = await self.upstream.post(inbound.headers, inbound.message.raw)
            body = await response.read()
        except UpstreamError as exc:
            return upstream_failure(None, exc)
        if response.status < 300:
            return EmptyReply(202, response.headers)
        return JsonReply(response.status, body, response.headers)

    async def open_stream(self, headers: dict[str, str]) -> Reply:
        """``GET /mcp``: the server-to-client stream, relayed byte for byte."""
        try:
            response = await self.upstream.open_stream(headers)
        except UpstreamError as exc:
            return upstream_failure(None, exc, status=502)
        if response.content_type == "text/event-stream" and response.status == 200:
            return StreamReply(200, response.iter_chunks(), response.headers)
        return JsonReply(response.status, await response.read(), response.headers)

    async def delete(self, headers: dict[str, str]) -> Reply:
        """``DELETE /mcp``: end the session upstream."""
        try:
            response = await self.upstream.delete(headers)
            body = await response.read()
        except UpstreamError as exc:
            return upstream_failure(None, exc, status=502)
        if not body:
            return EmptyReply(response.status, response.headers)
        return JsonReply(response.status, body, response.headers)


async def _settled(audit: CallAudit, reply: Reply) -> Reply:
    """Record the call once its reply is known; in strict durability, only answer once it is stored."""
    if isinstance(reply, StreamReply):
        return dataclasses.replace(reply, chunks=audit.hold(reply.chunks, reply.status))
    await audit.settle(reply.status)
    return reply
