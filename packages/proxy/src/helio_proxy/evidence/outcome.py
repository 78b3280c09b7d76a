"""What the proxy concludes from a forwarded call's response: success, a digest, an id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from helio_proxy.ids import new_hex


def call_succeeded(response: Any) -> bool:
    """Whether a ``tools/call`` response counts as success for prerequisites and evidence.

    Success means a JSON-RPC ``result`` with no ``error`` and without ``result.isError: true``.
    ``None`` (no response: the upstream failed) is not a success.
    """
    if not isinstance(response, dict) or "error" in response:
        return False
    result: Any = response.get("result")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(result, dict):
        return False
    return result.get("isError") is not True  # pyright: ignore[reportUnknownMemberType]


def result_digest(response: Any) -> str:
    """``sha256:<hex>`` of the response's ``result`` as canonical JSON (sorted keys, compact).

    Recorded as the data of proxy-produced evidence, so the evidence is tied to the exact output
    the proxy relayed without keeping the output itself.
    """
    result: Any = response.get("result") if isinstance(response, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def new_call_id() -> str:
    """A fresh id for one forwarded call (32 hex characters); the SDK reads it from the session state."""
    return new_hex()
