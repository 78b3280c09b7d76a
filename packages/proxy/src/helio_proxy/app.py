"""The proxy process: builds the gateway from a config and serves its listeners.

One process, one event loop: the agent listener (``listen``), the SDK sideband (``sdk``, when
enabled) and, as later parts land, the dashboard. Beside them run the annotation primer
(tool baselines) and the config watcher (hot reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp

from helio_proxy import __version__, capabilities, console
from helio_proxy.approvals import SLACK_ACTIONS_PATH, ApprovalService, SlackActions, approval_routes
from helio_proxy.audit import AuditTrail, DriftEventRecord
from helio_proxy.audit.records import PolicyReloadRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.baselines import BaselineSync, DurableBaselineStore, baseline_key
from helio_proxy.config import HelioConfig, LoadedConfig
from helio_proxy.config.digest import secret_values
from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.dataplane import CredentialProvider, DataPlane, ToolInventory, provider_for
from helio_proxy.dataplane.tools import RecordingLister
from helio_proxy.errors import StartupError
from helio_proxy.evidence import (
    EvidenceService,
    InMemorySessionStore,
    SqlSessionStore,
    StoreLimits,
    run_sweeper,
)
from helio_proxy.gateway import Gateway
from helio_proxy.gateway.enforcement import ApprovalGate, GovernanceEnforcer, LimitGate, fail_closed_warnings
from helio_proxy.gateway.exchange import Upstream
from helio_proxy.gateway.priming import AnnotationPrimer, UpstreamToolLister, revalidation_interval
from helio_proxy.gateway.reloader import ConfigWatcher, ReloadOutcome
from helio_proxy.gateway.snapshot import Snapshot, Snapshots
from helio_proxy.hardening import forbid_inspection
from helio_proxy.killswitch import KillSwitch
from helio_proxy.killswitch.api import kill_switch_routes
from helio_proxy.limits import LimitsGate
from helio_proxy.limits.api import limits_routes
from helio_proxy.mount import MCP_BASE, SSE_BASE, Mount
from helio_proxy.operator import ApiRoute, EventBus, OperatorApi
from helio_proxy.operator.console import AuditTail, console_router
from helio_proxy.policy import BaselineCache, DriftEvent
from helio_proxy.server import Listener, bind
from helio_proxy.session.binding import SessionOwners
from helio_proxy.sideband import TOKEN_ENV_VAR, SidebandApp, SidebandToken, resolve_token
from helio_proxy.store import changes
from helio_proxy.telemetry.endpoint import MetricsEndpoint, scrape_secret
from helio_proxy.telemetry.metrics import Gauges, Metrics
from helio_proxy.telemetry.tracing import Tracing, tracing_from
from helio_proxy.transports.downstream.agent_auth import unauthenticated_exposure
from helio_proxy.transports.downstream.streamable_http import McpListenerApp
from helio_proxy.transports.upstream.legacy_sse import LegacySseUpstream
from helio_proxy.transports.upstream.stdio import StdioUpstream, Withheld
from helio_proxy.transports.upstream.streamable_http import StreamableHttpUpstream
from helio_proxy.url_display import display_url
from helio_proxy.workers import worker_count


def _of(upstream: str | None) -> str:
    """`` (name)`` after a per-upstream startup line's subject, when upstreams have names."""
    return f" ({upstream})" if upstream else ""


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


@dataclass
class HelioApp:
    """A configured proxy. ``await start()`` binds and serves; ``stop()`` ends it."""

    loaded: LoadedConfig
    out: TextIO = field(default_factory=lambda: sys.stderr)
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    """Where ``HELIO_SDK_TOKEN`` is read from, and a generated token is written to (children inherit it)."""
    hot_reload: bool = True
    """Watch the config file (``policies.hot_reload`` must allow it too; ``--no-hot-reload`` clears it)."""
    serve_mcp: bool = True
    """Serve the agent-facing HTTP listener (``helio wrap`` serves MCP on stdio instead)."""
    require_console: bool = False
    """Refuse to start when ``dashboard.enabled`` and the console's assets are not installed
    (``helio start`` and ``helio demo``; in-process embedders may serve only the API)."""
    inherit_environment: bool = False
    """Stdio upstreams inherit all of :attr:`environ` but the proxy's secrets (``helio wrap``: the
    client's environment), not only the default set (see :mod:`.transports.upstream.stdio`)."""
    worker: tuple[int, int] | None = None
    """``(index, port)`` as one of ``helio start --workers N`` (see :mod:`.workers`): the MCP port is
    shared (``SO_REUSEPORT``) and only worker 0 serves the dashboard and the SDK sideband."""
    freeze_heap: bool = False
    """Once started, move every object alive then out of the garbage collector's sight
    (``gc.freeze()``): set by :func:`run_app` for a proxy process. See :func:`freeze_startup_heap`."""
    own_process: bool = False
    """The proxy is the program (set by :func:`run_app`), not embedded in another: ``audit.writer:
    auto`` may then write through a writer process (see ``AuditTrail.uses_process``)."""
    tracing: Tracing | None = None
    """Traces with these providers (tests: in-memory exporters); ``None`` builds them from the config."""
    listeners: list[Listener] = field(default_factory=list[Listener])
    _tasks: list[asyncio.Task[None]] = field(default_factory=list[asyncio.Task[None]])
    _background: list[asyncio.Task[None]] = field(default_factory=list[asyncio.Task[None]])
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        config = self.loaded.config
        refused = unauthenticated_exposure(config.listen) if self.serve_mcp else None
        if refused is not None:
            raise StartupError(refused)  # before anything is opened
        self.snapshots = Snapshots(Snapshot.of(self.loaded))
        # Records carry the hash of the config in force when they are written (reloads change it).
        self.audit = AuditTrail(self.loaded, config_sha256=lambda: self.snapshots.current.loaded.sha256)
        # Session state (evidence, calls, dependencies, context): in the audit trail's store when
        # ``store.session_state`` says so (``auto``: on PostgreSQL or as one of several workers),
        # so restarts, replicas and the other workers see it.
        caps = config.session
        state_limits = StoreLimits(
            max_sessions=caps.max_sessions,
            max_keys_per_session=caps.max_keys_per_session,
            max_tools_per_session=caps.max_tools_per_session,
            max_session_bytes=caps.max_session_bytes,
            max_total_bytes=caps.max_total_bytes,
        )
        self.sessions: InMemorySessionStore | SqlSessionStore = (
            SqlSessionStore(self.audit.store, limits=state_limits)
            if config.store.session_state_in_store(multi_process=self.worker is not None)
            else InMemorySessionStore(limits=state_limits)
        )
        self.evidence = EvidenceService(self.sessions, self.current_config)
        self.events = EventBus()
        """Live operator events (``/api/events`` on the dashboard port)."""
        self.operator_routes: list[ApiRoute] = []
        """REST endpoints components add to the dashboard port before :meth:`start`."""
        self.approvals = ApprovalService(
            self.current_config, self.audit.store, auditor=self.audit.auditor, events=self.events
        )
        """Approval tickets: the gate below, the REST API, the Slack callback."""
        self.approval_gate: ApprovalGate | None = self.approvals
        self.operator_routes.extend(approval_routes(self.approvals))
        self.limits = LimitsGate(
            self.audit.store,
            self.current_config,
            publish=self.events.publish,
            # Strict durability: every call's charge row is committed before it is forwarded, as
            # its audit record is, so a crash loses none (grants would leave only their block).
            grants=self.audit.durability == "batched",
        )
        """Rate/spend limits and budgets, counted in the audit trail's store."""
        self.limit_gate: LimitGate | None = self.limits
        self.operator_routes.extend(limits_routes(self.limits))
        writer = self.audit.writer
        self.kill_switch = KillSwitch(
            self.audit.store,
            writer.rows,
            chained=writer.chained,
            signer=writer.signer,
            events=self.events,
            environment=lambda: self.current_config().environment,
            config_sha256=lambda: self.snapshots.current.loaded.sha256,
        )
        """Checked first on every tools/call; engaged through the CLI, the API or the console."""
        self.operator_routes.extend(
            kill_switch_routes(self.kill_switch, lambda: [m.name for m in self.mounts if m.name])
        )
        self.changes = changes.ChangeBus(self.audit.store, url=getattr(self.audit.store, "url", None))
        """Changes made by other proxies and CLI commands on the store (kill switch, baselines, approvals)."""
        self.tracing = (
            tracing_from(config.telemetry.tracing, self.environ, Redactor(config.audit.redact))
            if self.tracing is None
            else self.tracing
        )
        """OpenTelemetry traces (``None``: off, nothing wrapped)."""
        gates = (self.approval_gate, self.limit_gate)
        if self.tracing is not None:
            self.audit.auditor.observers.append(self.tracing.observe)
            # The call's span takes the record's outcome before it ends: build it before the reply.
            self.audit.auditor.after_reply = False
            gates = self.tracing.gates(*gates)
        self.enforcer = GovernanceEnforcer(*gates)
        self.metrics = Metrics(self._gauges(), max_tools=config.telemetry.metrics.max_tools)
        """Prometheus metrics, counted from the audit records (``/metrics`` on the dashboard port)."""
        self.audit.auditor.observers.append(self.metrics.observe)
        self.session_owners = SessionOwners() if config.listen.auth is not None else None
        """Governance session id → the agent that holds it, shared by every mount (``listen.auth``)."""
        self.mounts = [self._mount(upstream_config) for upstream_config in config.upstream_list]
        """One per upstream, in config order (a single one for the ``upstream:`` form)."""
        first = self.mounts[0]
        # The first mount under the names the single-upstream form has always used.
        self.upstream = first.upstream
        self.gateway = first.gateway
        self.baseline_store = first.baseline_store
        self.baselines = first.baselines
        self.baseline_sync = first.baseline_sync
        self.primer = first.primer
        self.mcp_app: McpListenerApp | None = None
        self._started = False
        self.watcher: ConfigWatcher | None = None
        # A config built in memory (tests, embedding) has no file to watch.
        if self.hot_reload and config.policies.hot_reload and self.loaded.path.is_file():
            self.watcher = ConfigWatcher(
                self.snapshots, self.loaded.path, self.say, self._record_reload, approvals=True
            )
        self.dashboard_ui: ASGIApp | None = console.ConsoleAssets() if console.assets_available() else None
        """The console's static UI, served on the dashboard port outside ``/api/`` (set before start)."""
        self.operator_api: OperatorApi | None = None
        self.audit_tail: AuditTail | None = None
        self.sideband: SidebandApp | None = None
        self.sdk_token: SidebandToken | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def _gauges(self) -> Gauges:
        """Scrape-time readers of this process's in-memory state (never the store)."""
        writer = self.audit.writer
        return Gauges(
            approvals_pending=lambda: self.approvals.held,
            sessions_open=lambda: self.sessions.session_count,
            audit_queue_depth=writer.pending,
            audit_written=lambda: writer.stats.written,
            audit_failed=lambda: writer.stats.failed,
            audit_dropped=lambda: writer.stats.dropped,
            budget_utilisation=lambda: self.limits.budget_utilisation(),
            limit_utilisation=lambda: self.limits.limit_utilisation(),
            kill_switch=lambda: self.kill_switch.gauge(),
            data_plane_findings=self._data_plane_findings,
        )

    def _problems(self) -> dict[str, str]:
        """What ``/healthz`` reports as degrading this proxy (an audit store it cannot write)."""
        failure = self.audit.writer.failure
        return {"audit_unavailable": failure} if failure is not None else {}

    def _data_plane_findings(self) -> Iterator[tuple[str, str, str, str, int]]:
        # Also read once at registration (before the mounts exist), to describe the metrics.
        mounts: list[Mount] = self.__dict__.get("mounts", [])
        for mount in mounts:
            plane = mount.gateway.dataplane
            if plane is None:
                continue
            for (rule, kind, action), count in plane.stats.findings.items():
                yield (mount.name or "", rule, kind, action, count)

    def _upstream_for(self, config: UpstreamConfig, credentials: CredentialProvider | None) -> Upstream:
        """The upstream client for ``upstream.transport``, presenting ``credentials``."""
        if config.transport == "stdio":
            return StdioUpstream(
                config,
                environ=self.environ,
                withheld=self._withheld,
                inherit=self.inherit_environment,
                credentials=credentials,
            )
        if config.transport == "sse":
            return LegacySseUpstream(config, credentials=credentials)
        return StreamableHttpUpstream(config, credentials=credentials)

    def _withheld(self) -> Withheld:
        """What no stdio child may inherit: the variables the config names (at boot and now), and
        any variable holding a secret of the config's or the sideband token."""
        boot, current = self.loaded, self.snapshots.current.loaded
        values = secret_values(boot.config) | secret_values(current.config)
        for upstream in (*boot.config.upstream_list, *current.config.upstream_list):
            values -= set(upstream.env.values())  # given to the child on purpose
        if self.sdk_token is not None:
            values.add(self.sdk_token.value)
        return Withheld(boot.referenced_env | current.referenced_env, frozenset(values))

    def _record_reload(self, outcome: ReloadOutcome) -> None:
        """Every attempted reload is one ``policy_reload`` audit record."""
        self.audit.auditor.submit(
            PolicyReloadRecord(
                timestamp=datetime.now(UTC),
                outcome="applied" if outcome.applied else "rejected",
                before_sha256=outcome.before_sha256,
                after_sha256=outcome.after_sha256,
                rule_count=outcome.rule_count,
                budget_count=outcome.budget_count,
                removed_rules=list(outcome.removed_rules),
                error=outcome.error,
                environment=self.loaded.config.environment,
                config_sha256=outcome.after_sha256 or outcome.before_sha256,
            )
        )

    def _mount(self, upstream_config: UpstreamConfig) -> Mount:
        """An upstream with its own gateway, baselines and primer, sharing the rest."""
        credentials = provider_for(upstream_config.credentials, upstream_config.name, self.environ)
        upstream = self._upstream_for(upstream_config, credentials)
        # Baselines persist in the audit trail's store, keyed by the upstream's name ("" unnamed).
        baseline_store = DurableBaselineStore(self.audit.store, baseline_key(upstream_config.name))
        baselines = BaselineCache(baseline_store)
        inventory = ToolInventory()
        # The primer and unknown-tool refreshes share one lister (one upstream session).
        lister = RecordingLister(
            UpstreamToolLister(
                upstream,
                pin=upstream_config.protocol_version,
                request_timeout=float(upstream_config.request_timeout.seconds),
            ),
            inventory,
        )
        dataplane = DataPlane(
            baselines,
            upstream_config.name,
            inventory=inventory,
            credential=credentials.name if credentials is not None else None,
        )
        gateway = Gateway(
            upstream if self.tracing is None else self.tracing.upstream(upstream),
            self.snapshots,
            auditor=self.audit.auditor,
            baselines=baselines,
            enforcer=self.enforcer,
            evidence=self.evidence,
            upstream_name=upstream_config.name,
            protocol_pin=upstream_config.protocol_version,
            dataplane=dataplane,
            tracing=self.tracing,
            request_timeout=float(upstream_config.request_timeout.seconds),
            connect_timeout=float(upstream_config.connect_timeout.seconds),
            kill_switch=self.kill_switch,
        )
        gateway.session_owners = self.session_owners

        async def refresh_tools() -> list[Any]:
            # An unknown tool was called: list the upstream once, taking the tools into the baselines.
            tools = await lister.list_tools()
            gateway.note_drift(baselines.observe(tools))
            baselines.primed = True
            return tools

        inventory.refresh = refresh_tools
        gateway.drift_observers.append(lambda event: self._audit_drift(event, upstream_config.name))
        primer = AnnotationPrimer(
            lister,
            baselines,
            on_drift=gateway.note_drift,
            on_primed=lambda count: self._primed_later(count, upstream_config.name),
            revalidate_every=self._revalidation_interval,
        )
        sync = BaselineSync(baseline_store, baselines, on_drift=gateway.note_drift)
        return Mount(upstream_config, upstream, gateway, baseline_store, baselines, sync, primer)

    async def _baseline_changed(self, change: dict[str, Any]) -> None:
        """A baseline was accepted somewhere (the change bus): the mounts concerned take it up now."""
        upstream = change.get("upstream")
        for mount in self.mounts:
            if change.get("resync") or baseline_key(mount.name) == upstream:
                await mount.baseline_sync.sync_once()

    async def _baseline_accepted(self, upstream_key: str, tool: str) -> None:
        """An operator accepted ``tool``'s new definition through the operator API: the mount's
        in-memory baselines take it up now, not at the next poll."""
        for mount in self.mounts:
            if baseline_key(mount.name) == upstream_key:
                await mount.baseline_sync.sync_once()

    def mount(self, name: str) -> Mount:
        """The mount of the upstream called ``name`` (``KeyError`` if there is none)."""
        for mount in self.mounts:
            if mount.name == name:
                return mount
        raise KeyError(name)

    def _revalidation_interval(self) -> float | None:
        revalidation = self.snapshots.current.config.policies.tool_revalidation
        return revalidation_interval(revalidation.enabled, revalidation.interval)

    def _audit_drift(self, event: DriftEvent, upstream: str | None) -> None:
        auditor = self.audit.auditor
        auditor.submit(
            DriftEventRecord(
                timestamp=auditor.clock.now(),
                tool_name=event.tool,
                policy_decision=event.kind,
                upstream=upstream,
                baseline_sha256=event.baseline_sha256,
                current_sha256=event.current_sha256,
                drifted_aspects=list(event.aspects),
                accepted_by=event.accepted_by,
                environment=auditor.environment,
                config_sha256=auditor.config_sha256,
            )
        )

    def _primed_later(self, count: int, upstream: str | None) -> None:
        if self._started:
            self.say(f"Annotation cache primed{_of(upstream)}: {count} tool definitions baselined")

    def current_config(self) -> HelioConfig:
        """The config snapshot in force now (what components read on every use)."""
        return self.snapshots.current.config

    @property
    def base_url(self) -> str:
        """Base URL of the agent port."""
        return _url(self.loaded.config.listen.host, self.listeners[0].port)

    @property
    def mcp_url(self) -> str:
        """The streamable HTTP endpoint of the first upstream (``/mcp``, or ``/mcp/<name>``)."""
        return self.base_url + self.mounts[0].path(MCP_BASE)

    @property
    def sse_url(self) -> str:
        """The legacy HTTP+SSE endpoint of the first upstream (``/sse``, or ``/sse/<name>``)."""
        return self.base_url + self.mounts[0].path(SSE_BASE)

    @property
    def dashboard_url(self) -> str:
        """Base URL of the dashboard port (REST API under ``/api/``; only when ``dashboard.enabled``)."""
        found = [listener for listener in self.listeners if listener.name == "dashboard"]
        if not found:
            raise RuntimeError("the dashboard is not running (dashboard.enabled is false)")
        return _url(self.loaded.config.dashboard.host, found[0].port)

    @property
    def sideband_url(self) -> str:
        """Base URL of the SDK sideband (only when ``sdk.enabled``)."""
        sdk = [listener for listener in self.listeners if listener.name == "sdk"]
        if not sdk:
            raise RuntimeError("the SDK sideband is not running (sdk.enabled is false)")
        return _url(self.loaded.config.sdk.host, sdk[0].port)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def start(self) -> None:
        """Bind every listener (failing fast with a clear error), then serve in the background."""
        config = self.loaded.config
        socks: list[socket.socket] = []
        if self.require_console and config.dashboard.enabled and not console.assets_available():
            raise StartupError(console.MISSING_ASSETS)
        try:
            port, first = config.listen.port, True
            if self.worker is not None:
                port, first = self.worker[1], self.worker[0] == 0
            mcp_sock = (
                bind(config.listen.host, port, "listen", reuse_port=self.worker is not None)
                if self.serve_mcp
                else None
            )
            if mcp_sock is not None:
                socks.append(mcp_sock)
            sdk_sock = bind(config.sdk.host, config.sdk.port, "sdk") if config.sdk.enabled and first else None
            if sdk_sock is not None:
                socks.append(sdk_sock)
            dashboard = config.dashboard
            dashboard_sock = (
                bind(dashboard.host, dashboard.port, "dashboard") if dashboard.enabled and first else None
            )
            if dashboard_sock is not None:
                socks.append(dashboard_sock)
            await self.audit.start(own_process=self.own_process, workers=worker_count())
            for mount in self.mounts:
                mount.baselines_kept = await mount.baseline_store.load()
                mount.baselines.restore()
            await self.limits.start()
            await self.approvals.start()
            await self.kill_switch.start()
            self.changes.subscribe(changes.KILL_SWITCH, self.kill_switch.refresh)
            self.changes.subscribe(changes.APPROVAL_RESOLVED, self.approvals.on_resolved)
            self.changes.subscribe(changes.BASELINE_ACCEPTED, self._baseline_changed)
            await self.changes.start()
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        for mount in self.mounts:
            await mount.upstream.start()
        slack = [channel for channel in config.approval.channels if channel.type == "slack"]
        extra = {SLACK_ACTIONS_PATH: SlackActions(self.approvals, slack)} if slack else None
        if mcp_sock is not None:
            self.mcp_app = McpListenerApp(
                {mount.name: mount.gateway for mount in self.mounts},
                config.listen,
                extra,
                streams=self.metrics.stream_changed,
                problems=self._problems,
            )
            self.listeners.append(Listener(self.mcp_app, mcp_sock, "mcp", lean=True))
        if dashboard_sock is not None:
            self.audit_tail = AuditTail(self.audit.store, self.events)
            routes = console_router(
                self.audit.store,
                self.sessions,
                lambda: [mount.name for mount in self.mounts],
                on_accepted=self._baseline_accepted,
            )
            self.operator_api = OperatorApi(
                config.dashboard,
                self.events,
                self.operator_routes,
                version=__version__,
                routers=[routes],
                ui=self.dashboard_ui,
                on_subscribe=self.audit_tail.wake,
                allowed_hosts=config.listen.allowed_hosts,
            )
            dashboard_app: Any = self.operator_api
            if config.telemetry.metrics.enabled:
                secret = scrape_secret(config.telemetry.metrics, dashboard)
                dashboard_app = MetricsEndpoint(dashboard_app, self.metrics, secret)
            self.listeners.append(
                Listener(
                    dashboard_app, dashboard_sock, "dashboard", trusted_proxies=dashboard.trusted_proxies
                )
            )
        if sdk_sock is not None:
            self.sdk_token = resolve_token(self.environ)
            self.sideband = SidebandApp(
                self.sessions,
                self.current_config,
                self.sdk_token.value,
                bind_host=config.sdk.host,
                allowed_hosts=config.listen.allowed_hosts,
            )
            self.listeners.append(Listener(self.sideband, sdk_sock, "sdk"))
        self._sweeper = asyncio.create_task(run_sweeper(self.sessions), name="helio-session-sweeper")
        for listener in self.listeners:
            self._tasks.append(asyncio.create_task(listener.serve(), name=f"helio-{listener.name}"))
        # Every upstream is primed at once: boot waits for the slowest, bounded by the primer.
        primed = await asyncio.gather(*(mount.primer.prime_at_boot() for mount in self.mounts))
        for mount, count in zip(self.mounts, primed, strict=True):
            mount.primed_at_boot = count
        self._print_startup()
        self._started = True
        for mount in self.mounts:
            suffix = f"-{mount.name}" if mount.name else ""
            self._background.append(asyncio.create_task(mount.primer.run(), name=f"helio-primer{suffix}"))
            self._background.append(
                asyncio.create_task(mount.baseline_sync.run(), name=f"helio-baseline-sync{suffix}")
            )
        if self.watcher is not None:
            ready = asyncio.Event()
            self._background.append(asyncio.create_task(self.watcher.run(ready.set), name="helio-watcher"))
            await ready.wait()
            self.say(f"Watching {self.loaded.path} for policy changes")

    def _print_startup(self) -> None:
        config = self.loaded.config
        policies = config.policies
        if self.serve_mcp:
            self.say(f"Helio proxy listening on {self.base_url}")
            for mount in self.mounts:
                of = _of(mount.name)
                self.say(f"MCP endpoint{of}: {self.base_url}{mount.path(MCP_BASE)}")
                self.say(f"Legacy SSE endpoint{of}: {self.base_url}{mount.path(SSE_BASE)}")
            auth = config.listen.auth
            if auth is None:
                self.say("Agents: not authenticated (listen.auth is not set)")
            else:
                issuers = ", ".join(issuer.issuer for issuer in auth.jwt) or "none"
                self.say(f"Agents: authenticated ({len(auth.tokens)} static tokens; JWT issuers: {issuers})")
        else:
            self.say("Helio proxy serving MCP on stdin/stdout")
        self.say(f"Policies: {len(policies.rules)} rules loaded (default: {policies.default})")
        if policies.shadow:
            self.say(f"Shadow policies: {len(policies.shadow)} rules (recorded, never enforced)")
        for mount in self.mounts:
            self.say(f"Upstream{_of(mount.name)}: {display_url(mount.config.url)} ({mount.config.transport})")
        self.say(self.audit.startup_line())
        self.say(
            f"Session state: in the store ({self.audit.store.description})"
            if isinstance(self.sessions, SqlSessionStore)
            else "Session state: in memory (lost on restart; store.session_state: store keeps it)"
        )
        kill = self.kill_switch.state
        if kill.any_engaged:
            scopes = ", ".join(sorted(kill.engaged)) or f"unreadable: {kill.unreadable}"
            self.say(f"Kill switch: ENGAGED ({scopes}): tools/call is blocked (helio resume releases it)")
        else:
            self.say("Kill switch: off (helio kill stops every tools/call on every proxy on this store)")
        for mount in self.mounts:
            self._print_baselines(mount)
        held = sum(1 for _ in config.approval_routes())
        if held:
            channels = ", ".join(f"{ref} ({kind})" for ref, kind in config.channel_types().items())
            self.say(
                f"Approvals: {held} rule(s) or switch(es) hold calls; channels: {channels}; "
                f"timeout {config.approval.timeout}, quorum {config.approval.quorum}"
            )
        if any(listener.name == "dashboard" for listener in self.listeners):
            if console.assets_available():
                self.say(f"Dashboard (operator console) on {self.dashboard_url}/")
            self.say(f"Dashboard API listening on {self.dashboard_url}/api/ (live events: /api/events)")
            ui_notice = capabilities.dashboard_ui_notice(config)
            if ui_notice is not None:
                self.say(f"Dashboard UI: {ui_notice}")
        if self.sdk_token is not None:
            self.say(f"SDK sideband listening on {self.sideband_url}")
            if self.sdk_token.from_env:
                self.say(f"SDK token: taken from {TOKEN_ENV_VAR}")
            else:
                self.say(f"SDK token (pass as {TOKEN_ENV_VAR} to your SDK clients):")
                self.say(self.sdk_token.value)
        for warning in [
            *self.loaded.warnings,
            *fail_closed_warnings(
                config, approvals=self.approval_gate is not None, limits=self.limit_gate is not None
            ),
            *capabilities.notices(config),
        ]:
            self.say(f"Warning: {warning}")
        if policies.dry_run:
            self.say("Dry-run: ENABLED (nothing is forwarded)")
        self.say(f"Config: {self.loaded.path}")

    def _print_baselines(self, mount: Mount) -> None:
        of = _of(mount.name)
        if mount.baselines_kept:
            drifted = sorted(mount.baselines.drifted())
            pending = f"; drifted, awaiting acceptance: {', '.join(drifted)}" if drifted else ""
            self.say(f"Tool baselines{of}: {mount.baselines_kept} kept from earlier runs{pending}")
        if mount.primed_at_boot is not None:
            self.say(f"Annotation cache primed{of}: {mount.primed_at_boot} tool definitions baselined")
        else:
            self.say(
                f"Warning: annotation cache{of} not primed ({mount.primer.last_error}); unknown tools are treated "
                "as destructive (MCP defaults) until the upstream answers tools/list (retrying in the background)"
            )

    async def wait(self) -> None:
        """Until :meth:`stop` is called or a listener ends."""
        stop_wait = asyncio.create_task(self._stopped.wait())
        await asyncio.wait([stop_wait, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to 5 s), close upstream connections."""
        # Held calls are answered (shutdown_cancelled) while their listener still serves them.
        await self.approvals.shutdown()
        if self.sideband is not None:
            self.sideband.begin_shutdown()
        self.events.close_all()
        if self.audit_tail is not None:
            await self.audit_tail.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.watcher is not None:
            self.watcher.stop_event.set()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.mcp_app is not None:
            await self.mcp_app.close()
        for listener in self.listeners:
            listener.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.limits.stop()
        await self.changes.stop()
        await self.kill_switch.stop()
        if self.tracing is not None:
            self.tracing.shutdown()
        await self.audit.stop()
        for mount in self.mounts:
            await mount.upstream.close()
        self._stopped.set()

    async def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM, stop."""
        loop = asyncio.get_running_loop()
        # Handlers go in before start(): start() takes a moment (opening the store, tool priming,
        # the watcher), and a signal arriving meanwhile must still mean a clean stop that drains
        # the audit writer.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopped.set)
        try:
            try:
                await self.start()
            except BaseException:
                await self.stop()  # release what start() had opened
                raise
            if self.freeze_heap:
                freeze_startup_heap()
            try:
                await self.wait()
            finally:
                self.say("Shutting down")
                await self.stop()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def freeze_startup_heap() -> None:
    """Collect once, then freeze what is left (``gc.freeze()``): the modules, config, compiled
    policy and caches a started proxy holds for its whole life.

    A full (generation 2) collection walks every tracked object; a started proxy holds about
    135,000 of them, and one such pass measured 120-165 ms on the benchmark machine, a pause
    every request in flight waits out whenever the collector decides to run it under load. Frozen
    objects are never examined again, so later full passes walk only what was allocated since
    (sessions, caches), and the young-generation passes the per-call garbage triggers are
    unchanged. A frozen object that later becomes cyclic garbage is not freed: startup objects
    live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def run_app(app: HelioApp) -> None:
    """Run the proxy on uvloop when available (non-dumpable: see :mod:`.hardening`), its startup
    heap frozen once it serves (:func:`freeze_startup_heap`)."""
    forbid_inspection()
    app.freeze_heap = True
    app.own_process = True
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
        asyncio.run(app.run())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(app.run())
