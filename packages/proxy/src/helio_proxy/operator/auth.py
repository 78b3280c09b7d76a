"""Who is calling the operator API: the shared ``api_secret``, a named operator, or open mode.

Credentials arrive as ``Authorization: Bearer <secret>`` (scripts, webhook receivers) or as the
``helio_session`` cookie a browser gets from ``POST /api/auth/session`` (then every mutating
request must also carry the session's CSRF token in ``x-helio-csrf``).

Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
configured credential each time, so timing says nothing about which one (if any) matched.
``dashboard.api_secret`` may be given in clear or as ``sha256:<hex>``; operators' secrets are only
ever configured as digests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from helio_proxy.config.sections import DashboardConfig

SESSION_COOKIE: Final = "helio_session"
CSRF_HEADER: Final = "x-helio-csrf"
SESSION_LIFETIME: Final = 8 * 3600.0
"""Seconds a dashboard login lasts."""

LOGIN_FAILURE_LIMIT: Final = 10
"""Failed logins per client address within :data:`LOGIN_FAILURE_WINDOW` before it must wait."""
LOGIN_FAILURE_WINDOW: Final = 300.0

API_SECRET_OPERATOR: Final = "api_secret"  # noqa: S105 - a name, not a secret
"""The name recorded for whoever used the shared ``dashboard.api_secret``."""
LOGIN_TOKEN_LIFETIME: Final = 120.0
"""Seconds a one-time login link (``/?token=...``, printed by ``helio demo``) stays usable."""

OPEN_MODE_OPERATOR: Final = "open_mode"
"""The name recorded in ``allow_open_mode`` without credentials."""

ROLE_ORDER: Final = {"viewer": 0, "approver": 1, "admin": 2}

Via = Literal["api_secret", "operator", "open"]


def secret_digest(secret: str) -> str:
    """``sha256:<hex>`` of a secret, the form ``dashboard.operators[].secret_hash`` takes."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the operator API."""

    name: str
    """Recorded as the approver, the break-glass invoker, the acceptor of a drifted tool."""
    role: Literal["viewer", "approver", "admin"]
    """The highest role held; each role includes the ones below it."""
    via: Via

    def can(self, role: str) -> bool:
        return ROLE_ORDER[self.role] >= ROLE_ORDER[role]


@dataclass(slots=True)
class LoginSession:
    principal: Principal
    csrf_token: str
    expires_at: float


@dataclass(slots=True)
class _Credential:
    digest: bytes
    principal: Principal


def _digest_bytes(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _configured_digest(secret: str) -> bytes:
    if secret.startswith("sha256:") and len(secret) == 71:
        try:
            return bytes.fromhex(secret[7:])
        except ValueError:
            pass
    return _digest_bytes(secret)


@dataclass
class OperatorAuth:
    """Checks credentials and keeps dashboard login sessions (in memory, per process)."""

    config: DashboardConfig
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, LoginSession] = field(default_factory=dict[str, LoginSession])
    _failures: dict[str, list[float]] = field(default_factory=dict[str, list[float]])
    _login_tokens: dict[bytes, tuple[Principal, float]] = field(
        default_factory=dict[bytes, tuple[Principal, float]]
    )

    def __post_init__(self) -> None:
        self._credentials: list[_Credential] = []
        if self.config.api_secret:
            self._credentials.append(
                _Credential(
                    _configured_digest(self.config.api_secret),
                    Principal(API_SECRET_OPERATOR, "admin", "api_secret"),
                )
            )
        for operator in self.config.operators:
            role = max(operator.roles, key=ROLE_ORDER.__getitem__)
            self._credentials.append(
                _Credential(
                    _configured_digest(operator.secret_hash), Principal(operator.name, role, "operator")
                )
            )

    @property
    def open_mode(self) -> bool:
        """No credential configured and ``allow_open_mode`` (loopback only, enforced by the config)."""
        return not self._credentials and self.config.allow_open_mode

    def check_secret(self, secret: str) -> Principal | None:
        """The principal whose secret this is, or ``None``; compares against every credential."""
        presented = _digest_bytes(secret)
        found: Principal | None = None
        for credential in self._credentials:
            if hmac.compare_digest(presented, credential.digest):
                found = credential.principal
        return found

    def from_bearer(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.check_secret(token.strip())

    # -- login sessions ------------------------------------------------------------------------

    def begin_login(self, client: str) -> float | None:
        """Count a login attempt from ``client``, or say how many seconds it must wait instead.

        The attempt counts as a failure from the moment it is made (a successful login then
        clears the client's count), and this is synchronous: called before the handler first
        awaits, it admits at most :data:`LOGIN_FAILURE_LIMIT` attempts per window however many
        arrive at once.
        """
        now = self.clock()
        recent = [t for t in self._failures.get(client, []) if now - t < LOGIN_FAILURE_WINDOW]
        if len(recent) >= LOGIN_FAILURE_LIMIT:
            self._failures[client] = recent
            return max(1.0, LOGIN_FAILURE_WINDOW - (now - recent[0]))
        recent.append(now)
        self._failures[client] = recent
        return None

    def login(self, secret: str, client: str) -> tuple[str, LoginSession] | None:
        """A new session for a valid secret (``(cookie value, session)``), else ``None``.

        The attempt must already be counted (:meth:`begin_login`); success clears the count.
        """
        principal = self.check_secret(secret)
        if principal is None:
            return None
        self._failures.pop(client, None)
        return self._new_session(principal)

    def issue_login_token(
        self, principal: Principal | None = None, lifetime: float = LOGIN_TOKEN_LIFETIME
    ) -> str:
        """A single-use secret that :meth:`redeem_login_token` turns into a login session.

        For the one-click link ``helio demo`` prints. Only its digest is kept. ``principal``
        defaults to the ``api_secret`` admin.
        """
        token = secrets.token_urlsafe(32)
        who = principal or Principal(API_SECRET_OPERATOR, "admin", "api_secret")
        now = self.clock()
        for key in [k for k, (_, expires) in self._login_tokens.items() if expires <= now]:
            del self._login_tokens[key]
        self._login_tokens[_digest_bytes(token)] = (who, now + lifetime)
        return token

    def redeem_login_token(self, token: str, client: str) -> tuple[str, LoginSession] | None:
        """A new session for an unused, unexpired login token (which is spent), else ``None``."""
        found = self._login_tokens.pop(_digest_bytes(token), None)
        if found is None or found[1] <= self.clock():
            return None
        self._failures.pop(client, None)
        return self._new_session(found[0])

    def _new_session(self, principal: Principal) -> tuple[str, LoginSession]:
        self._expire()
        session_id = secrets.token_urlsafe(32)
        session = LoginSession(principal, secrets.token_urlsafe(32), self.clock() + SESSION_LIFETIME)
        self._sessions[session_id] = session
        return session_id, session

    def session(self, cookie: str | None) -> LoginSession | None:
        if not cookie:
            return None
        session = self._sessions.get(cookie)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[cookie]
            return None
        return session

    def logout(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(cookie, None)

    def _expire(self) -> None:
        now = self.clock()
        for key in [key for key, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]


def csrf_ok(session: LoginSession, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf_token.encode())
