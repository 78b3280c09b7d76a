"""``helio auth login``: consent for an upstream's OAuth authorization-code credential."""

from __future__ import annotations

import asyncio
import os
import webbrowser
from collections.abc import Callable

from helio_proxy.config import LoadedConfig
from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.dataplane.credentials import credential_name
from helio_proxy.dataplane.login import login
from helio_proxy.dataplane.oauth import OAuthCredential
from helio_proxy.errors import HelioProxyError


class AuthError(HelioProxyError):
    """The upstream has no credential ``helio auth login`` can obtain."""


def login_upstream(loaded: LoadedConfig, name: str | None) -> UpstreamConfig:
    """The upstream to log in to: ``name``, or the only one."""
    upstreams = loaded.config.upstream_list
    if name is None:
        if len(upstreams) != 1:
            raise AuthError("several upstreams are configured: name one (helio auth login NAME)")
        found = upstreams[0]
    else:
        matching = [u for u in upstreams if u.name == name]
        if not matching:
            raise AuthError(f"no upstream named {name!r} in the config")
        found = matching[0]
    credentials = found.credentials
    if credentials is None or credentials.type != "oauth2_authorization_code":
        raise AuthError(
            f"upstream {found.name or '(unnamed)'} has no 'credentials' of type 'oauth2_authorization_code'"
        )
    return found


def run_login(
    loaded: LoadedConfig, name: str | None, *, show: Callable[[str], None], open_browser: bool
) -> str:
    """Log in; return the line to print once the refresh token is stored."""
    upstream = login_upstream(loaded, name)
    assert upstream.credentials is not None
    credential = OAuthCredential(
        upstream.credentials,
        credential_name(upstream.credentials, upstream.name),
        os.environ,
        upstream=upstream.name or "",
    )

    def browse(url: str) -> None:
        webbrowser.open(url)

    asyncio.run(login(credential, show=show, browse=browse if open_browser else None))
    return f"Authorized: the refresh token for {credential.name} is stored encrypted in {upstream.credentials.token_store}"
