"""The proxy's own log lines: ``log.format`` (text or one JSON object a line), ``log.level``,
and every line scrubbed of secrets before it is written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, cast

from opentelemetry import trace

from helio_proxy.audit.redact import Redactor
from helio_proxy.config.telemetry import LogConfig

REDACTED: Final = "[REDACTED]"
LOGGERS: Final = ("helio_proxy", "helio")
"""The proxy's logger trees (``helio.audit`` and friends, ``helio_proxy.*``)."""
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecretFilter(logging.Filter):
    """Replaces the config's secret values, and ``key=value`` pairs whose key names a secret."""

    def __init__(self, secrets: Iterable[str], redactor: Redactor | None = None) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.redactor = redactor or Redactor()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return self.redactor.scrub_text(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if scrubbed != message or record.args:
            record.msg, record.args = scrubbed, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the current trace's ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
            attributes: Any = getattr(trace.get_current_span(), "attributes", None)
            session: Any = (
                cast(Mapping[str, Any], attributes).get("mcp.session.id")
                if isinstance(attributes, Mapping)
                else None
            )
            if isinstance(session, str):
                line["session_id"] = session
        session_id = getattr(record, "session_id", None)
        if isinstance(session_id, str):
            line["session_id"] = session_id
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (never stdout: ``wrap`` speaks MCP there)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a broken stderr must not break the proxy
            self.handleError(record)


def configure_logging(
    config: LogConfig, secrets: Iterable[str], redact: Iterable[str] = ()
) -> logging.Handler:
    """Send the proxy's loggers to stderr in ``config.format`` at ``config.level``, secrets scrubbed."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SecretFilter(secrets, Redactor(redact)))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(config.level.upper())
        logger.propagate = False
    return handler
