"""Helio SDK: mark evidence, set context and declare dependencies on the Helio proxy's sideband.

Standard library only. Start with ``HelioContext`` and ``instrument()``; see ``docs/sdk.md``.
"""

from helio._blocked import Blocked, blocked
from helio._call_id import call_id_of
from helio._client import HelioClient
from helio._context import HelioContext, current_context
from helio._errors import (
    HelioAuthError,
    HelioConnectionError,
    HelioError,
    HelioForbiddenError,
    HelioHTTPError,
    HelioNotSidebandError,
    HelioPayloadTooLargeError,
    HelioProtocolError,
    HelioSerializationError,
    HelioTimeoutError,
    HelioValidationError,
)
from helio._instrument import instrument, uninstrument
from helio._models import (
    CompletedTool,
    DeclaredDependency,
    EvidenceEntry,
    EvidenceReceipt,
    EvidenceStateReport,
    SessionState,
)
from helio._transport import Transport, TransportRequest, TransportResponse, UrllibTransport
from helio._version import __version__

__all__ = [
    "Blocked",
    "CompletedTool",
    "DeclaredDependency",
    "EvidenceEntry",
    "EvidenceReceipt",
    "EvidenceStateReport",
    "HelioAuthError",
    "HelioClient",
    "HelioConnectionError",
    "HelioContext",
    "HelioError",
    "HelioForbiddenError",
    "HelioHTTPError",
    "HelioNotSidebandError",
    "HelioPayloadTooLargeError",
    "HelioProtocolError",
    "HelioSerializationError",
    "HelioTimeoutError",
    "HelioValidationError",
    "SessionState",
    "Transport",
    "TransportRequest",
    "TransportResponse",
    "UrllibTransport",
    "__version__",
    "blocked",
    "call_id_of",
    "current_context",
    "instrument",
    "uninstrument",
]
