"""Header/body agreement: the ``Mcp-Method``, ``Mcp-Name`` and ``MCP-Protocol-Version`` mirrors.

MCP 2026-07-28 mirrors body fields into HTTP headers so intermediaries can route without parsing
the body, and requires every server that reads the body to reject a request whose headers
disagree with it (HTTP 400, JSON-RPC ``-32020`` HeaderMismatch). The proxy governs from the body;
a request whose headers say something else could steer a router, rate limiter or log that trusts
the headers, so it is refused here and audited, whatever the era:

* a present ``Mcp-Method`` must equal the body's ``method``;
* for ``tools/call`` and ``prompts/get`` (``params.name``) and ``resources/read`` (``params.uri``)
  a present ``Mcp-Name`` must equal that value once decoded (values that are not plain printable
  ASCII travel in the sentinel form ``=?base64?<base64 of the UTF-8 bytes>?=``);
* a request carrying the modern ``_meta`` envelope must also carry ``MCP-Protocol-Version`` equal
  to the envelope's version, ``Mcp-Method``, and ``Mcp-Name`` when the named value is present.

Legacy requests need no mirror headers; only ones that are sent are compared.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from helio_proxy.gateway.eras import meta_version
from helio_proxy.jsonrpc import Kind, Message

NAME_PARAMS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Methods whose ``Mcp-Name`` header mirrors a body parameter, and which parameter."""

_SENTINEL: Final = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a message's headers disagree with its body."""

    header: str
    """The header at fault, as the spec spells it (``Mcp-Name``)."""
    message: str


def decode_header_value(raw: str) -> str | None:
    """A mirrored header's value, sentinel-decoded; ``None`` for a malformed sentinel."""
    found = _SENTINEL.match(raw)
    if found is None:
        return raw
    try:
        return base64.b64decode(found["payload"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def header_mismatch(message: Message, headers: Mapping[str, str]) -> Mismatch | None:
    """The first disagreement between ``headers`` (lower-cased names) and the body, if any."""
    method = message.method
    if method is None:
        return None
    version = meta_version(message) if message.kind is Kind.REQUEST else None
    modern = version is not None
    version_header = headers.get("mcp-protocol-version")
    if modern and version_header != version:
        if version_header is None:
            return Mismatch("MCP-Protocol-Version", "MCP-Protocol-Version header is missing")
        return Mismatch(
            "MCP-Protocol-Version",
            f"MCP-Protocol-Version header value {version_header!r} does not match "
            f"the body's _meta protocol version {version!r}",
        )
    method_header = headers.get("mcp-method")
    if method_header is None:
        if modern:
            return Mismatch("Mcp-Method", "Mcp-Method header is missing")
    elif method_header != method:
        return Mismatch(
            "Mcp-Method",
            f"Mcp-Method header value {method_header!r} does not match the body's method {method!r}",
        )
    key = NAME_PARAMS.get(method)
    if key is None:
        return None
    params = message.params or {}
    body_value = params.get(key)
    name_header = headers.get("mcp-name")
    if name_header is None:
        if modern and body_value is not None:
            return Mismatch("Mcp-Name", "Mcp-Name header is missing")
        return None
    decoded = decode_header_value(name_header)
    if decoded is None:
        return Mismatch("Mcp-Name", "Mcp-Name header carries a malformed base64 sentinel value")
    if decoded != body_value:
        return Mismatch(
            "Mcp-Name",
            f"Mcp-Name header value {decoded!r} does not match the body's params.{key} {body_value!r}",
        )
    return None
