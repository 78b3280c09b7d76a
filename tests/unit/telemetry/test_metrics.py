"""Metrics from audit records: labels, bounded tool cardinality, reloads, drift, gauges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from helio_proxy.audit.records import DriftEventRecord, PolicyReloadRecord, ToolCallRecord
from helio_proxy.telemetry.metrics import (
    MULTIPROC_ENV,
    OTHER,
    OVERHEAD_BUCKETS,
    Gauges,
    Metrics,
    _PlainMetric,  # pyright: ignore[reportPrivateUsage]
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def call(tool: str, **fields: object) -> ToolCallRecord:
    return ToolCallRecord(timestamp=NOW, tool_name=tool, metadata={"upstream": "up"}, **fields)  # pyright: ignore[reportArgumentType]


def test_tools_beyond_the_cap_fold_into_other() -> None:
    metrics = Metrics(max_tools=2)
    for tool in ("a", "b", "c", "d", "a"):
        metrics.observe(call(tool, proxy_compute_ms=1.0))
    got = samples(metrics)
    key = "helio_tool_calls_total"

    def labels(tool: str) -> tuple[tuple[str, str], ...]:
        return (("decision", "allow"), ("reason", ""), ("tool", tool), ("upstream", "up"))

    assert got[(key, labels("a"))] == 2
    assert got[(key, labels("b"))] == 1
    assert got[(key, labels(OTHER))] == 2
    assert (key, labels("c")) not in got
    assert got[("helio_proxy_overhead_seconds_count", (("upstream", "up"),))] == 5


def test_failures_approvals_reloads_and_drift_are_counted() -> None:
    metrics = Metrics()
    metrics.observe(call("t", upstream_error={"failure_class": "upstream_timeout"}, upstream_latency_ms=30.0))
    metrics.observe(
        call("t", policy_decision="require_approval", approval_status="approved", approval_wait_ms=2500.0)
    )
    metrics.observe(PolicyReloadRecord(timestamp=NOW, outcome="rejected"))
    metrics.observe(DriftEventRecord(timestamp=NOW, tool_name="t", upstream="up"))
    got = samples(metrics)
    assert (
        got[("helio_upstream_failures_total", (("failure_class", "upstream_timeout"), ("upstream", "up")))]
        == 1
    )
    assert got[("helio_upstream_latency_seconds_sum", (("upstream", "up"),))] == 0.03
    assert got[("helio_approval_wait_seconds_bucket", (("le", "5.0"), ("outcome", "approved")))] == 1
    assert got[("helio_approval_wait_seconds_bucket", (("le", "1.0"), ("outcome", "approved")))] == 0
    assert got[("helio_config_reloads_total", (("result", "rejected"),))] == 1
    assert got[("helio_drift_events_total", (("kind", "tool_drift"), ("upstream", "up")))] == 1


def test_gauges_are_read_at_scrape_time() -> None:
    state = {"held": 1}
    metrics = Metrics(
        Gauges(
            approvals_pending=lambda: state["held"],
            audit_queue_depth=lambda: 7,
            audit_failed=lambda: 3,
            budget_utilisation=lambda: [("daily", 0.85)],
            limit_utilisation=lambda: [("weather", "rate", 0.5), ("payments", "spend", 0.25)],
            kill_switch=lambda: [("global", 0.0), ("upstream:payments", 1.0)],
        )
    )
    assert samples(metrics)[("helio_approvals_pending", ())] == 1
    state["held"] = 4
    got = samples(metrics)
    assert got[("helio_approvals_pending", ())] == 4
    assert got[("helio_audit_queue_depth", ())] == 7
    assert got[("helio_audit_write_failures_total", ())] == 3
    assert got[("helio_budget_utilisation_ratio", (("budget", "daily"),))] == 0.85
    assert got[("helio_kill_switch_engaged", (("scope", "global"),))] == 0
    assert got[("helio_kill_switch_engaged", (("scope", "upstream:payments"),))] == 1
    assert got[("helio_limit_utilisation_ratio", (("kind", "rate"), ("rule", "weather")))] == 0.5
    assert got[("helio_limit_utilisation_ratio", (("kind", "spend"), ("rule", "payments")))] == 0.25


def test_open_streams_are_counted_by_transport_from_zero() -> None:
    metrics = Metrics()
    got = samples(metrics)
    assert got[("helio_streams_open", (("transport", "streamable_http"),))] == 0
    assert got[("helio_streams_open", (("transport", "sse"),))] == 0
    metrics.stream_changed("sse", 1)
    metrics.stream_changed("sse", 1)
    metrics.stream_changed("streamable_http", 1)
    metrics.stream_changed("sse", -1)
    got = samples(metrics)
    assert got[("helio_streams_open", (("transport", "streamable_http"),))] == 1
    assert got[("helio_streams_open", (("transport", "sse"),))] == 1


def _scraped(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_the_per_call_metrics_scrape_as_prometheus_clients_own_would() -> None:
    """The plain counter and histogram against prometheus-client's, fed the same values: bounds
    exactly, between them, zero, past the last one."""
    plain, native = CollectorRegistry(), CollectorRegistry()
    doc = "Calls."
    counters = (
        _PlainMetric("calls", doc, ["decision", "tool"], plain),
        Counter("calls", doc, ["decision", "tool"], registry=native),
    )
    histograms = (
        _PlainMetric("wait_seconds", doc, ["upstream"], plain, OVERHEAD_BUCKETS),
        Histogram("wait_seconds", doc, ["upstream"], buckets=OVERHEAD_BUCKETS, registry=native),
    )
    values = [0.0, *OVERHEAD_BUCKETS, 0.0003, 0.00099, 0.7, 2.0, 1e9, 0.00025]
    for metric in counters:
        for n in range(len(values)):
            metric.labels("allow" if n % 3 else "deny", f"t{n % 2}").inc()
        metric.labels("deny", "t9").inc(2.5)
    for metric in histograms:
        for n, value in enumerate(values):
            metric.labels("a" if n % 2 else "b").observe(value)
    assert _scraped(plain) == _scraped(native)
    assert _scraped(plain)[("wait_seconds_bucket", (("le", "0.00025"), ("upstream", "a")))] > 0
    with pytest.raises(ValueError, match="2 label values expected"):
        counters[0].labels("allow")


def test_one_process_counts_calls_without_prometheus_clients_per_call_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    single = Metrics()
    assert isinstance(single.calls, _PlainMetric)
    assert isinstance(single.overhead, _PlainMetric)
    single.observe(call("t", proxy_compute_ms=0.2, upstream_latency_ms=3.0))
    got = samples(single)
    assert got[("helio_upstream_latency_seconds_bucket", (("le", "0.005"), ("upstream", "up")))] == 1
    assert got[("helio_upstream_latency_seconds_bucket", (("le", "0.0025"), ("upstream", "up")))] == 0
    assert got[("helio_proxy_overhead_seconds_sum", (("upstream", "up"),))] == 0.0002
