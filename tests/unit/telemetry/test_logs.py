"""Log lines: text or one JSON object a line, the level honoured, secrets never written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from helio_proxy.config.telemetry import LogConfig
from helio_proxy.telemetry.logs import LOGGERS, configure_logging


class Err:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.seen = ""

    def getvalue(self) -> str:
        self.seen += self.capsys.readouterr().err
        return self.seen


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Err]:
    yield Err(capsys)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_json_lines_carry_time_level_logger_message_and_the_trace(stderr: Err) -> None:
    configure_logging(LogConfig(format="json", level="info"), secrets=[])
    tracer = TracerProvider().get_tracer("t")
    log = logging.getLogger("helio_proxy.gateway")
    with tracer.start_as_current_span("call", attributes={"mcp.session.id": "sess-1"}) as span:
        log.warning("upstream %s is slow", "demo")
    log.debug("not written at info")
    [line] = [json.loads(text) for text in stderr.getvalue().splitlines()]
    context = span.get_span_context()
    assert line["level"] == "warning"
    assert line["logger"] == "helio_proxy.gateway"
    assert line["message"] == "upstream demo is slow"
    assert line["time"].endswith("+00:00")
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["session_id"] == "sess-1"


def test_secrets_are_redacted_in_messages_arguments_and_tracebacks(stderr: Err) -> None:
    secret = "sk-live-0123456789abcdef"
    configure_logging(LogConfig(format="text", level="debug"), secrets=[secret])
    log = logging.getLogger("helio.audit")
    log.info("calling with %s", secret)
    log.info("header authorization=Bearer abcdefghijkl1234 sent")
    try:
        raise RuntimeError(f"token {secret} refused")
    except RuntimeError:
        log.exception("failed")
    text = stderr.getvalue()
    assert secret not in text
    assert "abcdefghijkl1234" not in text
    assert text.count("[REDACTED]") >= 2
    assert "calling with" in text
    assert "RuntimeError" in text


def test_the_level_is_honoured(stderr: Err) -> None:
    configure_logging(LogConfig(format="text", level="error"), secrets=[])
    logging.getLogger("helio_proxy.x").warning("quiet")
    logging.getLogger("helio_proxy.x").error("loud")
    assert "quiet" not in stderr.getvalue()
    assert "loud" in stderr.getvalue()
