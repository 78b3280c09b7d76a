"""Prometheus metrics: counters and histograms from the audit records, gauges read at scrape time.

Every call's facts come from one place: the audit trail's typed record
(:class:`~helio_proxy.audit.records.ToolCallRecord`), handed to :meth:`Metrics.observe` as it is
submitted (one function call per record on the hot path). Gauges (pending approvals, open
sessions, audit queue, limit and budget utilisation) are read from in-memory state when
``/metrics`` is scraped, never from the store; open streams are counted as they open and end.

With ``helio start --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a private
directory: counters and histograms of every worker are written there and worker 0's ``/metrics``
adds them up (prometheus-client's multiprocess mode), and so does the open-streams gauge (the
live workers' sum). Scrape-time gauges are worker 0's own view.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString  # pyright: ignore[reportUnknownVariableType]

from helio_proxy.audit.records import AnyRecord, DriftEventRecord, PolicyReloadRecord, ToolCallRecord

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

MAX_TOOLS: Final = 100
"""Distinct tool names kept as label values; later ones are counted under ``other``."""
OTHER: Final = "other"
CHILDREN_CACHED: Final = 4_096
"""Labelled metric children the per-call path keeps at hand (past this, ``labels()`` each time)."""

STREAM_TRANSPORTS: Final = ("streamable_http", "sse")
"""The ``transport`` values of ``helio_streams_open`` (exposed at zero from the start)."""

LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
OVERHEAD_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
WAIT_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

log = logging.getLogger(__name__)


@dataclass
class Gauges:
    """Scrape-time readers of in-memory state (each returns the current value)."""

    approvals_pending: Callable[[], int] | None = None
    sessions_open: Callable[[], int] | None = None
    audit_queue_depth: Callable[[], int] | None = None
    audit_written: Callable[[], int] | None = None
    audit_failed: Callable[[], int] | None = None
    audit_dropped: Callable[[], int] | None = None
    budget_utilisation: Callable[[], Iterable[tuple[str, float]]] | None = None
    """``(budget name, used / limit)`` of each budget's fullest bucket."""
    limit_utilisation: Callable[[], Iterable[tuple[str, str, float]]] | None = None
    """``(rule, kind, used / limit)`` of each rate or spend limit rule's fullest bucket."""
    kill_switch: Callable[[], Iterable[tuple[str, float]]] | None = None
    """``(scope, 1.0 or 0.0)``: ``global`` always, and each other engaged scope."""
    data_plane_findings: Callable[[], Iterable[tuple[str, str, str, str, int]]] | None = None
    """``(upstream, rule, kind, action, count)``: content-scan findings so far (data plane)."""


_T = TypeVar("_T")


def _read(read: Callable[[], float] | None) -> float | None:
    """One scrape-time value, or ``None`` when there is no reader or it cannot answer now (a
    store-backed reader before the store opens, or while it is down): a scrape never fails."""
    if read is None:
        return None
    try:
        return float(read())
    except Exception:
        log.debug("metrics: a gauge could not be read", exc_info=True)
        return None


def _rows(read: Callable[[], Iterable[_T]]) -> list[_T]:
    try:
        return list(read())
    except Exception:
        log.debug("metrics: a gauge could not be read", exc_info=True)
        return []


class _GaugeCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        g = self.gauges
        simple: list[tuple[str, str, Callable[[], int] | None]] = [
            ("helio_approvals_pending", "Calls held for an approval decision now.", g.approvals_pending),
            ("helio_sessions_open", "Sessions with state in memory now.", g.sessions_open),
            ("helio_audit_queue_depth", "Audit records buffered or being written now.", g.audit_queue_depth),
        ]
        for name, text, read in simple:
            if (value := _read(read)) is not None:
                yield GaugeMetricFamily(name, text, value=value)
        counters: list[tuple[str, str, Callable[[], int] | None]] = [
            ("helio_audit_records_written", "Audit records committed to the store.", g.audit_written),
            (
                "helio_audit_write_failures",
                "Audit records whose batch could not be committed.",
                g.audit_failed,
            ),
            (
                "helio_audit_records_dropped",
                "Audit records dropped because the queue was full.",
                g.audit_dropped,
            ),
        ]
        for name, text, read in counters:
            if (value := _read(read)) is not None:
                yield CounterMetricFamily(name, text, value=value)
        if g.budget_utilisation is not None:
            family = GaugeMetricFamily(
                "helio_budget_utilisation_ratio",
                "Budget spent over its limit (fullest bucket).",
                labels=["budget"],
            )
            for budget, ratio in _rows(g.budget_utilisation):
                family.add_metric([budget], ratio)
            yield family
        if g.limit_utilisation is not None:
            limits = GaugeMetricFamily(
                "helio_limit_utilisation_ratio",
                "Calls or spend counted over the limit of each rate/spend limit rule (fullest bucket).",
                labels=["rule", "kind"],
            )
            for rule, kind, ratio in _rows(g.limit_utilisation):
                limits.add_metric([rule, kind], ratio)
            yield limits
        if g.data_plane_findings is not None:
            found = CounterMetricFamily(
                "helio_data_plane_findings",
                "Content-scan findings in arguments and results, by scan rule, kind and action.",
                labels=["upstream", "rule", "kind", "action"],
            )
            for upstream, rule, kind, action, count in _rows(g.data_plane_findings):
                found.add_metric([upstream, rule, kind, action], float(count))
            yield found
        if g.kill_switch is not None:
            kill = GaugeMetricFamily(
                "helio_kill_switch_engaged",
                "1 while the kill switch stops calls in this scope (global, upstream:NAME, agent:ID).",
                labels=["scope"],
            )
            for scope, value in _rows(g.kill_switch):
                kill.add_metric([scope], value)
            yield kill


class _PlainCount:
    """One labelled value of a counter :class:`_PlainMetric` (what ``Counter.labels()`` gives)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _PlainBuckets:
    """One labelled value of a histogram :class:`_PlainMetric`: a count per bucket, and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is at least ``amount``, as prometheus-client counts.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _PlainMetric(Collector):
    """A counter or histogram of one process held in plain Python numbers, exposed as a metric
    family when scraped: the per-call metrics without prometheus-client's lock per value.

    ``labels()`` and ``inc()`` / ``observe()`` mirror prometheus-client's, so the per-call code is
    the same for both. prometheus-client took about 5 µs of the event loop per ``tools/call`` for
    its counter and two histograms (a lock per value, the bucket found in a Python loop); these
    take under 1 µs. Used when the process is the only one (no ``PROMETHEUS_MULTIPROC_DIR``);
    like the multiprocess collector, they export no ``_created`` series."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = None if buckets is None else (*buckets, float("inf"))
        self._values: dict[tuple[str, ...], Any] = {}
        registry.register(self)

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(values)}")
        key = tuple(str(value) for value in values)
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = _PlainCount() if self.bounds is None else _PlainBuckets(self.bounds)
        return found

    def describe(self) -> Iterator[Metric]:
        if self.bounds is None:
            yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        else:
            yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        values = list(self._values.items())  # one step under the GIL: a call may add one meanwhile
        if self.bounds is None:
            counter = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for key, count in values:
                counter.add_metric(key, count.value)
            yield counter
            return
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, observed in values:
            counts, total = list(observed.counts), observed.sum
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(self.bounds, counts, strict=True):
                running += count
                cumulative.append((floatToGoString(bound), float(running)))
            histogram.add_metric(key, cumulative, total)
        yield histogram


@dataclass
class Metrics:
    """The proxy's Prometheus metrics (one instance per :class:`~helio_proxy.app.HelioApp`)."""

    gauges: Gauges = field(default_factory=Gauges)
    max_tools: int = MAX_TOOLS

    def __post_init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Own registry (several apps in one test process must not collide); in multiprocess
        # mode the values live in the shared directory and are collected from there.
        self.registry = CollectorRegistry(auto_describe=True)
        metrics_registry = None if self.multiprocess else self.registry
        self._tools: set[str] = set()
        # The labelled children the per-call path uses, looked up once: ``labels()`` validates and
        # locks on every call (three per tools/call). Bounded like the labels (max_tools, upstreams).
        self._children: dict[tuple[str, ...], Any] = {}
        # The three metrics every tools/call moves: plain numbers when this process is the only one.
        self.calls: Any = self._per_call(
            "helio_tool_calls",
            "Governed tools/call requests by decision, block reason, tool and upstream.",
            ["decision", "reason", "tool", "upstream"],
        )
        self.upstream_failures = Counter(
            "helio_upstream_failures",
            "Forwarded calls the upstream did not answer, by failure class.",
            ["upstream", "failure_class"],
            registry=metrics_registry,
        )
        self.overhead: Any = self._per_call(
            "helio_proxy_overhead_seconds",
            "Time a call spent in the proxy, excluding the upstream and approval waits.",
            ["upstream"],
            OVERHEAD_BUCKETS,
        )
        self.upstream_latency: Any = self._per_call(
            "helio_upstream_latency_seconds",
            "Time from forwarding a call to the upstream's answer.",
            ["upstream"],
            LATENCY_BUCKETS,
        )
        self.approval_wait = Histogram(
            "helio_approval_wait_seconds",
            "How long held calls waited for an approval decision.",
            ["outcome"],
            buckets=WAIT_BUCKETS,
            registry=metrics_registry,
        )
        self.reloads = Counter(
            "helio_config_reloads", "Config reload attempts by result.", ["result"], registry=metrics_registry
        )
        self.drift = Counter(
            "helio_drift_events",
            "Tool definition drift events by kind.",
            ["upstream", "kind"],
            registry=metrics_registry,
        )
        # Changed as streams open and end (rare next to calls); ``livesum`` adds up the live
        # workers' values, and the supervisor forgets a worker's once it has exited.
        self.streams = Gauge(
            "helio_streams_open",
            "Server-to-client streams open now, by agent transport.",
            ["transport"],
            registry=metrics_registry,
            multiprocess_mode="livesum",
        )
        for transport in STREAM_TRANSPORTS:
            self.streams.labels(transport)
        if self.multiprocess:
            MultiProcessCollector(self.registry)
        self.registry.register(_GaugeCollector(self.gauges))

    def _per_call(
        self, name: str, documentation: str, labelnames: list[str], buckets: Sequence[float] | None = None
    ) -> Any:
        """A counter (or, with ``buckets``, a histogram) moved by every call: prometheus-client's in
        multiprocess mode (its values shared through the directory), else a :class:`_PlainMetric`."""
        if not self.multiprocess:
            return _PlainMetric(name, documentation, labelnames, self.registry, buckets)
        if buckets is None:
            return Counter(name, documentation, labelnames, registry=None)
        return Histogram(name, documentation, labelnames, buckets=buckets, registry=None)

    def tool_label(self, tool: str) -> str:
        """``tool``, or ``other`` once :attr:`max_tools` distinct names have been seen."""
        if tool in self._tools:
            return tool
        if len(self._tools) >= self.max_tools:
            return OTHER
        self._tools.add(tool)
        return tool

    def observe(self, record: AnyRecord) -> None:
        """Count one audit record (the trail's submit hook)."""
        if isinstance(record, ToolCallRecord):
            self._call(record)
        elif isinstance(record, PolicyReloadRecord):
            self.reloads.labels(record.outcome).inc()
        elif isinstance(record, DriftEventRecord):
            self.drift.labels(record.upstream or "", record.policy_decision).inc()

    def _call(self, record: ToolCallRecord) -> None:
        metadata = record.metadata or {}
        raw_upstream = metadata.get("upstream")
        upstream = raw_upstream if isinstance(raw_upstream, str) else ""
        children = self._children
        key = ("calls", record.policy_decision, record.block_reason or "", record.tool_name, upstream)
        counted = children.get(key)
        if counted is None:
            counted = self.calls.labels(
                record.policy_decision, record.block_reason or "", self.tool_label(record.tool_name), upstream
            )
            if len(children) < CHILDREN_CACHED:
                children[key] = counted
        counted.inc()
        if record.proxy_compute_ms is not None:
            self._upstream_child("overhead", self.overhead, upstream).observe(record.proxy_compute_ms / 1000)
        if record.upstream_latency_ms is not None:
            self._upstream_child("latency", self.upstream_latency, upstream).observe(
                record.upstream_latency_ms / 1000
            )
        error = record.upstream_error
        if error is not None:
            failure = error.get("failure_class")
            self.upstream_failures.labels(upstream, failure if isinstance(failure, str) else "unknown").inc()
        if record.approval_wait_ms is not None:
            self.approval_wait.labels(record.approval_status or "unknown").observe(
                record.approval_wait_ms / 1000
            )

    def _upstream_child(self, name: str, metric: Histogram, upstream: str) -> Any:
        key = (name, upstream)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(upstream)
            if len(self._children) < CHILDREN_CACHED:
                self._children[key] = child
        return child

    def stream_changed(self, transport: str, delta: int) -> None:
        """A ``GET`` stream opened (``+1``) or ended (``-1``): the MCP listener's stream tracker."""
        self.streams.labels(transport).inc(delta)

    def exposition(self) -> bytes:
        """The current scrape in the Prometheus text format."""
        return generate_latest(self.registry)
