"""``helio.instrument()``: requests to the proxy carry the current ``HelioContext``'s session.

While instrumented, every request an instrumented HTTP library sends to one of the proxy's
origins (scheme, host, port) inside a ``with HelioContext()`` block gets the header
``x-helio-session-id: <that context's session_id>``, unless it already has one. The context is
read per request from ``contextvars``, so concurrent tasks and threads each send their own.
Requests to any other origin, and requests made outside every context, are left as they are.

Nothing is imported: a library already in ``sys.modules`` is patched at once, any other one when
it is first imported (:mod:`helio._import_hook`). ``uninstrument()`` puts back the exact
function objects it replaced.
"""

import os
import sys
import threading
import warnings
from collections.abc import Iterable
from types import ModuleType
from typing import Final
from urllib.parse import urlsplit

from helio._context import current_context
from helio._import_hook import PostImportHook
from helio._patches import SEAMS, Seam

PROXY_URL_ENV_VAR: Final = "HELIO_MCP_URL"
"""Environment variable naming the proxy's MCP URL (several: separated by commas)."""

DEFAULT_PROXY_MCP_URL: Final = "http://127.0.0.1:3000/mcp"
"""Where ``helio start`` serves MCP unless ``listen`` says otherwise."""

LIBRARIES: Final = tuple(sorted(SEAMS))
"""The HTTP libraries ``instrument()`` knows: aiohttp, httpx, httpx2, requests."""

_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Origin = tuple[str, str, int]

_MISSING: Final = object()

_lock = threading.RLock()
_origins: frozenset[Origin] | None = None
_patched: list[tuple[type, str, object]] = []
"""``(owner, name, what owner.__dict__[name] was before)``, in patch order."""
_hook: PostImportHook | None = None


def _origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL; loopback names count as one host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if host in _LOOPBACK:
        host = "loopback"
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _proxy_origins(proxy_urls: Iterable[str] | str | None) -> frozenset[Origin]:
    if proxy_urls is None:
        configured = os.environ.get(PROXY_URL_ENV_VAR, "").strip()
        proxy_urls = [u.strip() for u in configured.split(",") if u.strip()] or [DEFAULT_PROXY_MCP_URL]
    elif isinstance(proxy_urls, str):
        proxy_urls = [proxy_urls]
    origins: set[Origin] = set()
    for url in proxy_urls:
        origin = _origin(url)
        if origin is None:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        origins.add(origin)
    if not origins:
        raise ValueError("proxy_urls is empty: give the proxy's MCP URL")
    return frozenset(origins)


def session_for(url: str) -> str | None:
    """The session id a request to ``url`` must carry now: the current context's, for the proxy."""
    ctx = current_context()
    origins = _origins
    if ctx is None or origins is None or _origin(url) not in origins:
        return None
    return ctx.session_id


def instrument(
    proxy_urls: Iterable[str] | str | None = None, *, libraries: Iterable[str] | None = None
) -> None:
    """Make requests to the proxy carry the current ``HelioContext``'s session header.

    ``proxy_urls``: the proxy's MCP URL(s); requests to the same scheme, host and port get the
    header (``localhost``, ``127.0.0.1`` and ``::1`` count as one host). ``None`` reads
    ``HELIO_MCP_URL`` (comma-separated), else ``http://127.0.0.1:3000/mcp``.
    ``libraries``: which of ``aiohttp``, ``httpx``, ``httpx2``, ``requests`` to patch (default
    all; one string is one name); each is patched now if imported, else when it is imported.
    Calling it again replaces the previous settings. Raises ``ValueError`` for a URL that is not
    http(s) or an unknown library.
    """
    global _origins, _hook
    origins = _proxy_origins(proxy_urls)
    if isinstance(libraries, str):
        libraries = [libraries]
    names = LIBRARIES if libraries is None else tuple(dict.fromkeys(libraries))
    unknown = sorted(set(names) - set(LIBRARIES))
    if unknown:
        raise ValueError(f"unknown libraries {unknown}: choose from {list(LIBRARIES)}")
    with _lock:
        _uninstrument()
        _origins = origins
        later = [name for name in names if name not in sys.modules]
        for name in names:
            if name in sys.modules:
                _patch(sys.modules[name])
        if later:
            _hook = PostImportHook(later, _on_import)
            _hook.install()


def uninstrument() -> None:
    """Undo ``instrument()``: the libraries get their original functions back; a no-op if not instrumented."""
    with _lock:
        _uninstrument()


def ensure_instrumented() -> None:
    """``instrument()`` with its defaults, unless it is already in force (for ``HelioContext``)."""
    with _lock:
        if _origins is None:
            instrument()


def _uninstrument() -> None:
    global _origins, _hook
    if _hook is not None:
        _hook.remove()
        _hook = None
    for owner, name, before in reversed(_patched):
        if before is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, before)
    _patched.clear()
    _origins = None


def _on_import(module: ModuleType) -> None:
    with _lock:
        if _origins is not None:
            _patch(module)


def _patch(module: ModuleType) -> None:
    try:
        seams = SEAMS[module.__name__](module, session_for)
        originals = [(seam, getattr(seam.owner, seam.name)) for seam in seams]
    except AttributeError as exc:
        version = getattr(module, "__version__", "of unknown version")
        warnings.warn(
            f"helio.instrument(): {module.__name__} {version} is not instrumented: {exc}",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    for seam, original in originals:
        _replace(seam, original)


def _replace(seam: Seam, original: object) -> None:
    before = seam.owner.__dict__.get(seam.name, _MISSING)
    _patched.append((seam.owner, seam.name, before))
    setattr(seam.owner, seam.name, seam.wrap(original))
