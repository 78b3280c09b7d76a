"""The governed pipeline: every message from an agent passes through :class:`Gateway`."""

from helio_proxy.gateway.exchange import EmptyReply, Inbound, JsonReply, Reply, StreamReply, error_reply
from helio_proxy.gateway.pipeline import Gateway

__all__ = ["EmptyReply", "Gateway", "Inbound", "JsonReply", "Reply", "StreamReply", "error_reply"]
