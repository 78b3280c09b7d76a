"""Session identity: which session a governed call belongs to.

Evidence, prerequisites and session-keyed limits are all per session, so every ``tools/call``
is first resolved to a session id through the ordered ``session.identity`` chain.
"""

from helio_proxy.session.identity import (
    ANONYMOUS_SESSION,
    CLIENT_INFO_META_KEY,
    MAX_SESSION_ID_LENGTH,
    SessionIdentity,
    SessionResolver,
    resolve_session,
)

__all__ = [
    "ANONYMOUS_SESSION",
    "CLIENT_INFO_META_KEY",
    "MAX_SESSION_ID_LENGTH",
    "SessionIdentity",
    "SessionResolver",
    "resolve_session",
]
