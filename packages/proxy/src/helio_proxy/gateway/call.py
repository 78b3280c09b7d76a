"""A ``tools/call`` as governance sees it."""

from __future__ import annotations

from typing import Any

from helio_proxy.gateway.exchange import Inbound
from helio_proxy.jsonrpc import RequestId
from helio_proxy.values import value


class InvalidToolCall(ValueError):
    """The request is not a usable ``tools/call`` (answered with -32602, never forwarded)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@value
class ToolCall:
    """The tool, its arguments and the request they came in."""

    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    inbound: Inbound

    @classmethod
    def from_inbound(cls, inbound: Inbound) -> ToolCall:
        params = inbound.message.params
        name = params.get("name") if params is not None else None
        if not isinstance(name, str) or not name:
            raise InvalidToolCall("tools/call needs params.name: a non-empty string", "missing_tool_name")
        raw_arguments: Any = params.get("arguments") if params is not None else None
        if raw_arguments is None:
            raw_arguments = {}
        if not isinstance(raw_arguments, dict):
            raise InvalidToolCall("tools/call params.arguments must be an object", "invalid_arguments")
        arguments: dict[str, Any] = raw_arguments  # pyright: ignore[reportUnknownVariableType]
        request_id = inbound.message.id
        assert request_id is not None
        return cls(request_id=request_id, name=name, arguments=arguments, inbound=inbound)
