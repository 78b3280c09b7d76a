"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs."""
