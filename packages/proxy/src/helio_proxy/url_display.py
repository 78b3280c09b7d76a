"""How the proxy shows a URL from its config: scheme, host and port, never anything else.

A configured URL may carry credentials (``https://user:pass@hooks.example``), a token in its path
(a Slack incoming webhook's ``/services/...``) or in its query (``?token=``). Everything the proxy
shows (log lines, the startup banner, API answers, live events, a ticket's
``notification_failures``, store descriptions) uses :func:`display_url`; free text that may quote
a URL, such as an HTTP library's error message, goes through :func:`strip_credentials` first.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@]*@")
"""``scheme://user:pass@``: the part of a URL before ``@`` in its authority."""


def display_url(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the port only when the URL names one)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range: not worth showing
        port = None
    shown = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{shown}" if parts.scheme else shown


def strip_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)
