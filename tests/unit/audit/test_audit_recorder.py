import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helio_proxy.audit.clock import ManualClock
from helio_proxy.audit.recorder import Auditor, CallAudit
from helio_proxy.audit.records import AnyRecord, ToolCallRecord
from helio_proxy.config.sections import IdentitySource, SessionConfig
from helio_proxy.errors import UpstreamProtocolError, UpstreamUnavailable
from helio_proxy.governance import CallOutcome
from helio_proxy.policy import Allow, Deny


class ListSink:
    """Collects records; in strict mode hands out commit futures the test resolves."""

    def __init__(self, *, strict: bool = False) -> None:
        self.records: list[ToolCallRecord] = []
        self.strict = strict
        self.commits: list[asyncio.Future[bool]] = []

    def submit(self, record: AnyRecord) -> asyncio.Future[bool] | None:
        assert isinstance(record, ToolCallRecord)
        self.records.append(record)
        if not self.strict:
            return None
        commit = asyncio.get_running_loop().create_future()
        self.commits.append(commit)
        return commit


def _params(name: Any = "get_weather", **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def _ok(text: str = "sunny", *, is_error: bool = False) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"content": [{"type": "text", "text": text}], "isError": is_error},
    }


def _call(sink: ListSink, clock: ManualClock | None = None, **headers: str) -> CallAudit:
    auditor = Auditor(sink, environment="prod", config_sha256="c" * 64, clock=clock or ManualClock())
    return auditor.begin(_params(city="Oslo"), 7, {"x-helio-session-id": "s-1", **headers})


async def test_a_forwarded_call_records_its_answer_timings_and_success() -> None:
    sink, clock = ListSink(), ManualClock()
    call = _call(sink, clock, **{"mcp-protocol-version": "2025-06-18"})
    clock.advance(0.002)
    observe = call.forwarding()
    clock.advance(0.010)
    observe(_ok(), None)
    await call.settle(200)
    [record] = sink.records
    assert (record.tool_name, record.tool_input, record.policy_decision) == (
        "get_weather",
        {"city": "Oslo"},
        "allow",
    )
    assert (record.session_id, record.session_source) == ("s-1", "header")
    assert record.success is True
    assert record.upstream_http_status == 200
    assert record.upstream_latency_ms == pytest.approx(10.0)
    assert record.total_duration_ms == pytest.approx(12.0)
    assert record.proxy_compute_ms == pytest.approx(2.0)
    assert record.environment == "prod"
    assert record.protocol_version == "2025-06-18"
    assert record.metadata == {"request_id": 7}


async def test_an_iserror_result_is_recorded_as_not_successful() -> None:
    sink = ListSink()
    call = _call(sink)
    call.forwarding()(_ok(is_error=True), None)
    await call.settle(200)
    assert sink.records[0].success is False
    assert sink.records[0].upstream_error is None


async def test_an_upstream_failure_records_its_class_and_http_status() -> None:
    sink = ListSink()
    call = _call(sink)
    call.forwarding()(
        None,
        UpstreamProtocolError(
            "bad gateway", failure_class="upstream_forward_error", upstream_http_status=502
        ),
    )
    await call.settle(200)
    record = sink.records[0]
    assert record.success is False
    assert record.upstream_http_status == 502
    assert record.upstream_error == {
        "failure_class": "upstream_forward_error",
        "message": "bad gateway",
        "upstream_http_status": 502,
    }


async def test_an_unreachable_upstream_has_no_http_status() -> None:
    sink = ListSink()
    call = _call(sink)
    call.forwarding()(None, UpstreamUnavailable("refused", failure_reason="connection_refused"))
    await call.settle(200)
    assert sink.records[0].upstream_http_status is None
    assert sink.records[0].upstream_error is not None
    assert sink.records[0].upstream_error["failure_reason"] == "connection_refused"


async def test_a_nameless_call_is_rejected_once_and_never_forwarded() -> None:
    sink = ListSink()
    call = Auditor(sink).begin({"arguments": {"a": 1}}, 1, {})
    call.reject("missing_tool_name")
    await call.settle(200)
    [record] = sink.records
    assert (record.tool_name, record.policy_decision, record.block_reason) == (
        "<nameless>",
        "rejected",
        "missing_tool_name",
    )
    assert record.success is None
    assert record.upstream_latency_ms is None


async def test_governance_decisions_are_carried_onto_the_record() -> None:
    sink = ListSink()
    call = _call(sink)
    denied = Deny(rule="no-deletes", rule_index=2, reason="policy_denied")
    call.reject("header_mismatch", metadata={"extra": True})
    assert sink.records[0].metadata == {"request_id": 7, "extra": True}
    call = _call(sink)
    call.block(CallOutcome("get_weather", denied, denied))
    record = sink.records[1]
    assert (record.policy_decision, record.block_reason, record.matched_rule, record.matched_rule_index) == (
        "deny",
        "policy_denied",
        "no-deletes",
        2,
    )
    assert record.metadata == {"request_id": 7}


async def test_a_call_is_recorded_only_once() -> None:
    sink = ListSink()
    call = _call(sink)
    call.reject("missing_tool_name")
    call.reject("missing_tool_name")
    await call.settle(200)
    assert len(sink.records) == 1


async def test_after_reply_settle_returns_first_and_the_record_follows_on_the_next_loop_turn() -> None:
    sink, clock = ListSink(), ManualClock()
    auditor = Auditor(sink, config_sha256="c" * 64, clock=clock, after_reply=True)
    seen: list[AnyRecord] = []
    auditor.observers.append(seen.append)  # the metrics are fed with the record, also later
    call = auditor.begin(_params(city="Oslo"), 7, {})
    clock.advance(0.002)
    observe = call.forwarding()
    clock.advance(0.010)
    observe(_ok(), None)
    await call.settle(200)
    assert sink.records == []  # the gateway writes the reply now
    assert seen == []
    clock.advance(0.5)  # the reply's writing is not the call's: timings end at the answer
    await asyncio.sleep(0)
    [record] = sink.records
    assert seen == [record]
    assert (record.success, record.upstream_http_status) == (True, 200)
    assert record.total_duration_ms == pytest.approx(12.0)
    await call.settle(200)  # settling again records nothing more
    await asyncio.sleep(0)
    assert len(sink.records) == 1


async def test_after_reply_leaves_blocks_and_rejections_recorded_at_once() -> None:
    sink = ListSink()
    call = Auditor(sink, after_reply=True).begin(_params(), 1, {})
    call.block(CallOutcome("get_weather", Deny(reason="nope"), Deny(reason="nope")))
    assert len(sink.records) == 1
    await call.settle(403)
    await asyncio.sleep(0)
    assert len(sink.records) == 1


async def _stream(observe: Any) -> AsyncIterator[bytes]:
    yield b"event: message\ndata: progress\n\n"
    observe(_ok(), None)  # as the relay does: observe, then yield the answering event
    yield b"event: message\ndata: answer\n\n"


async def test_strict_mode_holds_the_answering_event_until_its_record_commits() -> None:
    sink = ListSink(strict=True)
    call = _call(sink)
    chunks = call.hold(_stream(call.forwarding()), 200)
    assert await anext(chunks) == b"event: message\ndata: progress\n\n"
    answer = asyncio.ensure_future(anext(chunks))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not answer.done()
    sink.commits[0].set_result(True)
    assert await asyncio.wait_for(answer, 5) == b"event: message\ndata: answer\n\n"
    await chunks.aclose()  # type: ignore[attr-defined]
    assert len(sink.records) == 1
    assert sink.records[0].success is True


async def test_a_stream_that_ends_before_the_answer_is_still_recorded() -> None:
    sink = ListSink()
    call = _call(sink)
    call.forwarding()

    async def cut_short() -> AsyncIterator[bytes]:
        yield b"event: message\ndata: progress\n\n"

    chunks = call.hold(cut_short(), 200)
    assert [c async for c in chunks] == [b"event: message\ndata: progress\n\n"]
    [record] = sink.records
    assert record.success is False
    assert record.upstream_error is not None
    assert record.upstream_error["failure_class"] == "unanswered"


async def test_strict_waiting_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink(strict=True)
    call = Auditor(sink, strict_wait=0.01).begin(_params(), 1, {})
    call.forwarding()(_ok(), None)
    with caplog.at_level(logging.WARNING, logger="helio.audit"):
        await asyncio.wait_for(call.settle(200), 5)
    assert "not committed" in caplog.text


async def test_a_record_that_cannot_be_built_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    call = _call(sink)
    broken = Allow(reason="rule_matched", rule_index="not a number")  # type: ignore[arg-type]
    call.conclude(CallOutcome("get_weather", broken, broken))
    with caplog.at_level(logging.ERROR, logger="helio.audit"):
        await call.settle(200)
    assert sink.records == []
    assert "could not be built" in caplog.text


async def test_the_record_takes_its_session_from_the_first_identity_source_that_yields_one() -> None:
    identity = [IdentitySource(source="header", name="x-agent-session"), IdentitySource(source="meta")]
    meta = {"_meta": {"io.modelcontextprotocol/clientInfo": {"name": "claude", "version": "1.2"}}}
    sink = ListSink()
    auditor = Auditor(sink, session=SessionConfig(identity=identity), clock=ManualClock())
    for headers in ({"x-agent-session": "a"}, {}):
        call = auditor.begin({**_params(), **meta}, 1, headers)
        call.reject("missing_tool_name")
    assert [(r.session_id, r.session_source) for r in sink.records] == [
        ("a", "header"),
        ("clientinfo:claude@1.2", "meta"),
    ]
