"""The data plane: what a tool call may carry, what reaches the agent, and the credentials the
proxy holds for upstreams (``docs/data-plane.md``)."""

from helio_proxy.dataplane.credentials import CredentialProvider, provider_for
from helio_proxy.dataplane.inspector import (
    INVALID_ARGUMENTS,
    INVALID_RESULT,
    SENSITIVE_CONTENT,
    TOOL_NOT_FOUND,
    CallCheck,
    DataPlane,
    ResultCheck,
)
from helio_proxy.dataplane.tools import ToolInventory

__all__ = [
    "INVALID_ARGUMENTS",
    "INVALID_RESULT",
    "SENSITIVE_CONTENT",
    "TOOL_NOT_FOUND",
    "CallCheck",
    "CredentialProvider",
    "DataPlane",
    "ResultCheck",
    "ToolInventory",
    "provider_for",
]
