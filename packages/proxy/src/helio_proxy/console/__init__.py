"""The operator console's built assets, served on the dashboard port beside ``/api/``.

The single-page app's sources live in ``packages/dashboard/`` (TypeScript); its build lands in
``static/`` here (git-ignored): ``./dev`` builds it when its sources changed and the wheel's hatch
build hook builds it into every ``helio-proxy`` wheel. :class:`ConsoleAssets` serves those files and
answers every other non-API path with ``index.html`` (the app routes in the browser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
INDEX: Final = "index.html"

MISSING_ASSETS: Final = (
    "the operator console's built assets are missing from this installation "
    f"({STATIC_DIR / INDEX} not found). Build them with `./dev build` in a source checkout "
    "(needs Node >= 20, or fetches Node from PyPI), install a helio-proxy wheel (wheels ship them), "
    "or set dashboard.enabled: false to run without the console and its API."
)
"""What ``helio start`` says when ``dashboard.enabled`` and there is nothing to serve."""

SECURITY_HEADERS: Final = {
    # The app loads only its own files; uPlot sets inline style attributes.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # A one-time login link (?token=...) must never leave in a Referer header.
    "referrer-policy": "no-referrer",
}


def assets_available(static_dir: Path | None = None) -> bool:
    """Whether this installation ships the built console."""
    return ((static_dir or STATIC_DIR) / INDEX).is_file()


RESERVED: Final = frozenset({"/metrics", "/healthz"})
"""Paths of the dashboard port that are never the console's page, even when nothing serves them."""


class ConsoleAssets:
    """ASGI app: a file under ``static/`` when one matches the path, else ``index.html``."""

    def __init__(self, static_dir: Path | None = None) -> None:
        self.root = (static_dir or STATIC_DIR).resolve()

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        if not relative or relative.startswith("."):
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        if any(part.startswith(".") for part in candidate.relative_to(self.root).parts):
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse(
                {"error": f"method {scope['method']} not allowed", "code": "method_not_allowed"},
                status_code=405,
                headers={"allow": "GET, HEAD"},
            )
        elif (found := self._file(scope["path"])) is not None:
            hashed = found.parent.name == "assets"
            cache = "public, max-age=31536000, immutable" if hashed else "no-cache"
            response = FileResponse(found, headers={"cache-control": cache, **SECURITY_HEADERS})
        elif scope["path"].startswith("/assets/") or scope["path"] in RESERVED:
            # /metrics with metrics turned off is a 404, not the console's page.
            response = JSONResponse({"error": "not found", "code": "not_found"}, status_code=404)
        else:
            index = self.root / INDEX
            if not index.is_file():
                response = JSONResponse({"error": MISSING_ASSETS, "code": "not_found"}, status_code=404)
            else:
                response = FileResponse(
                    index, media_type="text/html", headers={"cache-control": "no-cache", **SECURITY_HEADERS}
                )
        await response(scope, receive, send)
