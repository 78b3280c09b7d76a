"""The ``telemetry`` and ``log`` sections: Prometheus metrics, OpenTelemetry traces, log lines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from helio_proxy.config.base import ConfigModel, Secret


class MetricsConfig(ConfigModel):
    """``/metrics`` on the dashboard listener, in the Prometheus text format."""

    enabled: bool = True
    """Serve ``/metrics`` (needs ``dashboard.enabled``)."""

    auth: Literal["auto", "none", "bearer"] = "auto"
    """``none``: anyone who reaches the dashboard port may scrape. ``bearer``: scrapers send
    ``Authorization: Bearer <metrics.bearer_token, or dashboard.api_secret when unset>``.
    ``auto`` (the default): ``none`` on a loopback ``dashboard.host``, ``bearer`` otherwise."""

    bearer_token: Secret[str | None] = None
    """The scrape secret for ``auth: bearer`` (default: ``dashboard.api_secret``)."""

    max_tools: int = Field(default=100, ge=1, le=10_000)
    """Distinct tool names kept as label values; later tools are counted as ``other``."""


class TracingConfig(ConfigModel):
    """OpenTelemetry traces of ``tools/call`` requests, exported with OTLP over HTTP."""

    enabled: bool = False
    """Record and export spans. Also on when ``OTEL_TRACES_EXPORTER=otlp`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and
    ``OTEL_SDK_DISABLED`` is not ``true``)."""

    endpoint: str | None = None
    """OTLP/HTTP traces endpoint (e.g. ``http://127.0.0.1:4318/v1/traces``); unset: the
    ``OTEL_EXPORTER_OTLP_*`` variables, else ``http://localhost:4318/v1/traces``."""

    service_name: str = "helio"
    """``service.name`` of the resource (``OTEL_SERVICE_NAME`` wins when set)."""

    capture_arguments: bool = False
    """Add the call's arguments and result as ``helio.tool.arguments`` / ``helio.tool.result``
    span attributes (redacted like the audit trail)."""


class TelemetryConfig(ConfigModel):
    """Metrics and traces for the operator's monitoring (see docs/observability.md)."""

    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Prometheus ``/metrics``."""

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    """OpenTelemetry traces (off by default)."""


class LogConfig(ConfigModel):
    """The proxy's own log lines on stderr."""

    format: Literal["text", "json"] = "text"
    """``text``: human lines. ``json``: one object a line (``time``, ``level``, ``logger``,
    ``message``, and ``trace_id`` / ``span_id`` / ``session_id`` when known)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
