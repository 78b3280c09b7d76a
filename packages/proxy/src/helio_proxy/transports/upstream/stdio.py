"""stdio upstream: ``upstream.command`` spawned once per session, newline-delimited JSON-RPC.

Each downstream session gets its own child (see :mod:`~helio_proxy.transports.upstream.channel`),
supervised: when it exits, requests in flight fail with ``failure_class: upstream_exited`` and it
is restarted (3 attempts, 1 s doubling; the count resets after a minute up) with the client's
``initialize`` replayed. Its stderr lines go to the ``helio_proxy.upstream.stdio`` logger,
prefixed with the upstream's name. Shutdown follows the spec: close stdin, wait, SIGTERM, wait,
SIGKILL (the whole process group, so wrappers such as ``npx`` take their children along).

The child never sees a secret of the proxy's (:func:`child_environment`). Under ``helio start``
it inherits only :data:`DEFAULT_INHERITED_ENV` from the proxy's environment; under ``helio wrap``
(``inherit=True``) it inherits the environment the client started the proxy with, as a server the
client launched directly would. Either way every ``HELIO_*`` variable, every variable the config
names as ``${VAR}`` and every variable holding the value of a secret config field (or the
sideband token) is left out; then ``upstream.env`` is set over what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.dataplane.credentials import CredentialProvider
from helio_proxy.errors import UpstreamExited, UpstreamUnavailable
from helio_proxy.transports.ndjson import MAX_LINE_BYTES, OVERSIZED, encode_line, read_lines
from helio_proxy.transports.upstream.channel import (
    Channel,
    ChannelEvents,
    MessageUpstream,
)

log = logging.getLogger("helio_proxy.upstream.stdio")

WITHHELD_ENV_PREFIX: Final = "HELIO_"
"""Variables named so are the proxy's own (``HELIO_SDK_TOKEN``, ...): never passed to a child."""

DEFAULT_INHERITED_ENV: Final = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LANGUAGE"}
)
"""What a stdio child inherits from the proxy's environment under ``helio start`` (plus ``LC_*``):
enough to find programs and run them in the right locale, nothing that holds a credential."""


@dataclass(frozen=True, slots=True)
class Withheld:
    """What a stdio child must not inherit: variables by name, and any variable by its value."""

    names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()


EXIT_GRACE_SECONDS: Final = 2.0
"""How long a child gets to exit after its stdin closes, and again after SIGTERM."""


def _inheritable(name: str, inherit: bool) -> bool:
    return inherit or name in DEFAULT_INHERITED_ENV or name.startswith("LC_")


def child_environment(
    environ: Mapping[str, str],
    withheld: Withheld,
    *,
    inherit: bool,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A stdio child's environment: what it may inherit of ``environ`` (all of it when
    ``inherit``, else :data:`DEFAULT_INHERITED_ENV` and ``LC_*``) without ``HELIO_*`` and what
    ``withheld`` names, then ``extra`` (``upstream.env``) set over it."""
    env = {
        name: value
        for name, value in environ.items()
        if _inheritable(name, inherit)
        and not name.upper().startswith(WITHHELD_ENV_PREFIX)
        and name not in withheld.names
        and value not in withheld.values
    }
    env.update(extra or {})
    return env


def command_problem(command: str, environ: Mapping[str, str]) -> str | None:
    """Why ``command`` cannot be started (not found, not executable), or ``None``."""
    path = environ.get("PATH", os.defpath)
    if shutil.which(command, path=path) is None:
        return f"command {command!r} not found or not executable (PATH={path})"
    return None


class StdioChannel(Channel):
    """One child process."""

    def __init__(
        self,
        events: ChannelEvents,
        *,
        command: str,
        args: list[str],
        environment: Callable[[], dict[str, str]],
        max_line_bytes: int = MAX_LINE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(events, **kwargs)
        self.max_line_bytes = max_line_bytes
        """A longer line from the child is not read (``upstream.max_response_bytes``)."""
        self.command = command
        self.args = args
        self.environment = environment
        self.process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _connect(self) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                self.command,
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(),
                limit=self.max_line_bytes,
                start_new_session=True,  # its own process group: signals reach its children too
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UpstreamUnavailable(
                f"cannot start upstream command {self.command!r}: {reason}", failure_reason="spawn_failed"
            ) from exc
        self.process = process
        log.info("[%s] started %s (pid %d)", self.label, self.command, process.pid)
        self._tasks = [
            asyncio.create_task(self._read_stdout(process), name=f"helio-stdio-out-{process.pid}"),
            asyncio.create_task(self._log_stderr(process), name=f"helio-stdio-err-{process.pid}"),
        ]

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in read_lines(process.stdout):
            if line is OVERSIZED:
                self.events.on_oversized(self.max_line_bytes)
                continue
            assert isinstance(line, bytes)
            self.deliver(line)
        try:
            async with asyncio.timeout(EXIT_GRACE_SECONDS):
                code: int | None = await process.wait()
        except TimeoutError:
            code = None
        what = f"exited with code {code}" if code is not None else "closed its stdout"
        self.connection_lost(
            UpstreamExited(
                f"upstream command {self.command!r} {what}", failure_reason="exited", exit_code=code
            )
        )

    async def _log_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in read_lines(process.stderr):
            if line is OVERSIZED:
                continue
            assert isinstance(line, bytes)
            log.info("[%s] %s", self.label, line.decode("utf-8", errors="replace"))

    async def _write(self, data: bytes) -> None:
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise BrokenPipeError("the child is not running")
        process.stdin.write(encode_line(data))
        await process.stdin.drain()

    async def _disconnect(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            await _stop(process)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Close stdin, wait; SIGTERM the group, wait; SIGKILL the group."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        try:
            async with asyncio.timeout(EXIT_GRACE_SECONDS):
                await process.wait()
            return
        except TimeoutError:
            continue


class StdioUpstream(MessageUpstream):
    """A stdio MCP server, one child per downstream session."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        environ: Mapping[str, str] | None = None,
        withheld: Callable[[], Withheld] = Withheld,
        inherit: bool = False,
        credentials: CredentialProvider | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.credentials = credentials
        """The proxy's own credential for this upstream (set in the child's environment at spawn)."""
        if not config.command:
            raise ValueError("a stdio upstream needs 'command'")
        self.command = config.command
        self.args = list(config.args)
        self.extra_env = dict(config.env)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        """The environment the child inherits from (as :func:`child_environment` cuts it)."""
        self.withheld = withheld
        """What the child must not inherit, asked at every spawn (the config can be reloaded)."""
        self.inherit = inherit
        """Inherit all of :attr:`environ` (``helio wrap``), not just :data:`DEFAULT_INHERITED_ENV`."""

    def command_problem(self) -> str | None:
        """Why the command cannot be started, or ``None`` (checked before ``helio wrap`` serves)."""
        return command_problem(self.command, self._environment())

    def _environment(self) -> dict[str, str]:
        extra = self.extra_env
        if self.credentials is not None:
            extra = {**extra, **self.credentials.environment()}
        return child_environment(self.environ, self.withheld(), inherit=self.inherit, extra=extra)

    def open_channel(self, events: ChannelEvents) -> Channel:
        return StdioChannel(
            events,
            command=self.command,
            args=self.args,
            environment=self._environment,
            max_line_bytes=self.max_response_bytes,
            label=self.label,
            policy=self.policy,
            ready_timeout=self.connect_timeout,
            clock=self.clock,
            sleep=self.sleep,
        )
