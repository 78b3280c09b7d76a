"""``helio auth login UPSTREAM``: the authorization-code flow with PKCE, on a loopback redirect.

The proxy listens on ``127.0.0.1`` for the redirect, prints (and optionally opens) the
authorization URL, checks the returned ``state``, trades the code for tokens with the PKCE
verifier, and stores the refresh token encrypted (:class:`~helio_proxy.dataplane.oauth.TokenStore`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from helio_proxy.dataplane.credentials import CredentialMissing
from helio_proxy.dataplane.oauth import OAuthCredential, pkce_pair

LOGIN_TIMEOUT: Final = 300.0
"""How long ``helio auth login`` waits for the browser to come back (seconds)."""

CALLBACK_PATH: Final = "/callback"


async def login(
    credential: OAuthCredential,
    *,
    show: Callable[[str], None],
    browse: Callable[[str], Awaitable[None] | None] | None = None,
    wait_seconds: float = LOGIN_TIMEOUT,
) -> None:
    """Run the flow once; the refresh token is stored when this returns (``CredentialMissing`` otherwise)."""
    config = credential.config
    assert config.authorization_url is not None
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        query = request.query
        if query.get("state") != state:
            return web.Response(status=400, text="state does not match; start helio auth login again")
        if not answer.done():
            if "error" in query:
                answer.set_exception(CredentialMissing(f"authorization refused: {query['error']}"))
            elif "code" in query:
                answer.set_result(query["code"])
            else:
                return web.Response(status=400, text="no code in the redirect")
        return web.Response(text="Helio is authorized; you can close this window.")

    app = web.Application()
    app.router.add_get(CALLBACK_PATH, callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.redirect_port)
    await site.start()
    try:
        port = runner.addresses[0][1]
        redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        params = {
            "response_type": "code",
            "client_id": config.client_id or "",
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        if config.scope:
            params["scope"] = config.scope
        if config.resource:
            params["resource"] = config.resource
        separator = "&" if "?" in config.authorization_url else "?"
        url = config.authorization_url + separator + urlencode(params)
        show(url)
        if browse is not None:
            opened = browse(url)
            if opened is not None:
                await opened
        try:
            async with asyncio.timeout(wait_seconds):
                code = await answer
        except TimeoutError as exc:
            raise CredentialMissing(f"no authorization came back within {wait_seconds:g}s") from exc
        await credential.exchange_code(code, verifier, redirect_uri)
    finally:
        await runner.cleanup()
