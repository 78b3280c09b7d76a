"""Helio SDK: mark evidence, set context and declare dependencies on the Helio proxy's sideband.

Standard library only. See ``docs/sdk.md``.
"""

from helio._errors import (
    HelioAuthError,
    HelioConnectionError,
    HelioError,
    HelioForbiddenError,
    HelioHTTPError,
    HelioPayloadTooLargeError,
    HelioProtocolError,
    HelioSerializationError,
    HelioTimeoutError,
    HelioValidationError,
)
from helio._models import (
    CompletedTool,
    DeclaredDependency,
    EvidenceEntry,
    EvidenceReceipt,
    EvidenceStateReport,
    SessionState,
)
from helio._version import __version__

__all__ = [
    "CompletedTool",
    "DeclaredDependency",
    "EvidenceEntry",
    "EvidenceReceipt",
    "EvidenceStateReport",
    "HelioAuthError",
    "HelioConnectionError",
    "HelioError",
    "HelioForbiddenError",
    "HelioHTTPError",
    "HelioPayloadTooLargeError",
    "HelioProtocolError",
    "HelioSerializationError",
    "HelioTimeoutError",
    "HelioValidationError",
    "SessionState",
    "__version__",
]
