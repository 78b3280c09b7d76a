"""Cross-site checks for the endpoints that set or clear the session cookie (login, logout).

Mutating requests made with a cookie session carry the CSRF token, but login and logout have no
session yet (or are ending one), so a page on another site could otherwise log a browser in (to
an account of the attacker's choosing) or out. Two checks close that, before anything is read:

* ``Content-Type`` must be ``application/json`` (its essence, any case, parameters allowed):
  a cross-site page can send ``text/plain`` or a form without asking, but ``application/json``
  makes the browser ask first (a CORS preflight) and this API never says yes. Otherwise 415.
* ``Origin``, when present, must be the listener's own origin: the request's scheme with the
  host and port of its ``Host`` header (which the Host guard has already accepted), default
  ports implied (``http://h`` is ``http://h:80``). ``null`` and any other origin get 403.
  Clients that send no ``Origin`` (scripts, ``curl``) are not browsers on another site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from helio_proxy.guards import content_type_essence

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _origin_tuple(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return scheme, host.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Whether ``origin`` names the listener the request reached (``scheme`` + ``Host``)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return False
    theirs = _origin_tuple(parts.scheme, parts.netloc)
    ours = _origin_tuple(scheme, host_header.strip())
    return theirs is not None and theirs == ours


def cookie_endpoint_refusal(headers: Mapping[str, str], scheme: str) -> tuple[int, str] | None:
    """``(status, message)`` when a login or logout request must be refused, else ``None``.

    ``headers`` is looked up by lower-case name (Starlette's ``Headers`` is case-insensitive).
    """
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, scheme, headers.get("host") or ""):
        return 403, f"cross-origin request refused: Origin {origin!r} is not this dashboard's origin"
    if content_type_essence(headers.get("content-type")) != "application/json":
        return 415, "send the body as JSON, with Content-Type: application/json"
    return None
