import asyncio
import contextvars
import re
import sys
import threading

import pytest

import helio
from helio import HelioContext, TransportRequest, TransportResponse, current_context
from helio.testing import FakeSideband, ManualClock


def _in_thread(target) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_context_generates_a_uuid4_hex_session_id_by_default():
    first, second = HelioContext(), HelioContext()

    assert re.fullmatch(r"[0-9a-f]{32}", first.session_id)
    assert first.session_id != second.session_id


@pytest.mark.parametrize("session_id", ["", "   ", "x" * 257])
def test_a_blank_or_over_long_session_id_is_refused(session_id):
    with pytest.raises(ValueError, match="session_id"):
        HelioContext(session_id=session_id)


def test_headers_are_what_the_mcp_client_must_send_to_join_the_session():
    ctx = HelioContext(session_id="agent-run-42")

    headers = ctx.headers
    headers["x-other"] = "changed"

    assert ctx.headers == {"x-helio-session-id": "agent-run-42"}


def test_client_is_the_helio_client_the_context_sends_through(fake: FakeSideband):
    ctx = HelioContext("http://127.0.0.1:3201/", "s1", timeout=2.0)

    assert isinstance(ctx.client, helio.HelioClient)
    assert (ctx.client.sideband_url, ctx.client.timeout) == ("http://127.0.0.1:3201", 2.0)
    assert repr(ctx) == "HelioContext(sideband_url='http://127.0.0.1:3201', session_id='s1')"


def test_every_context_method_sends_its_own_session_id(fake: FakeSideband):
    with fake.context("s1") as ctx:
        ctx.mark_evidence("orders.lookup", "order_data", {"id": 7}, ttl=120)
        ctx.set("tier", "gold")
        ctx.declare_dependency("orders.refund", requires=["orders.lookup"])
        ctx.get_evidence_state()

    assert [(c.method, c.path, c.status) for c in fake.calls] == [
        ("POST", "/evidence", 201),
        ("POST", "/context", 201),
        ("POST", "/dependencies", 201),
        ("GET", "/session/s1/state", 200),
    ]
    assert all(call.json["session_id"] == "s1" for call in fake.calls[:3])
    assert fake.calls[0].json["ttl_seconds"] == 120


def test_the_evidence_report_splits_required_keys_into_satisfied_and_missing(fake: FakeSideband):
    with fake.context("s1") as ctx:
        ctx.require_evidence(["order_data", "customer_verified"])
        ctx.require_evidence("refund_policy")
        ctx.require_evidence(["order_data"])
        ctx.mark_evidence("orders.lookup", "order_data", {"id": 7})

        report = ctx.get_evidence_state()

    assert report.required == ["order_data", "customer_verified", "refund_policy"]
    assert report.satisfied == ["order_data"]
    assert report.missing == ["customer_verified", "refund_policy"]
    assert report.complete is False
    assert report.state.evidence["order_data"].data == {"id": 7}


def test_require_evidence_is_local_and_sends_nothing(fake: FakeSideband):
    fake.context().require_evidence(["order_data"])

    assert fake.calls == []


def test_expired_evidence_is_reported_missing_just_like_evidence_never_marked(
    fake: FakeSideband, clock: ManualClock
):
    with fake.context("s1") as ctx:
        ctx.require_evidence(["order_data", "customer_verified"])
        ctx.mark_evidence("orders.lookup", "order_data", {"id": 7}, ttl=60)

        clock.advance(59.999)
        before = ctx.get_evidence_state()
        clock.advance(0.001)
        after = ctx.get_evidence_state()

    assert before.satisfied == ["order_data"]
    assert before.missing == ["customer_verified"]
    assert after.satisfied == []
    assert after.missing == ["order_data", "customer_verified"]
    assert after.state.evidence == {}


def test_evidence_bound_to_a_call_the_proxy_saw_succeed_is_verified(fake: FakeSideband):
    with fake.context("s1") as ctx:
        call_id = fake.record_tool_call("s1", "orders.lookup", succeeded=True)
        receipt = ctx.mark_evidence("orders.lookup", "order_data", {"id": 7}, call_id=call_id)
        entry = ctx.get_evidence_state().state.evidence["order_data"]

    assert receipt.verified is True
    assert (entry.verified, entry.call_id) == (True, call_id)


def test_evidence_without_a_call_id_or_bound_to_a_failed_call_is_not_verified(fake: FakeSideband):
    with fake.context("s1") as ctx:
        failed = fake.record_tool_call("s1", "orders.lookup", succeeded=False)
        unbound = ctx.mark_evidence("orders.lookup", "order_data", 1)
        bound_to_failure = ctx.mark_evidence("orders.lookup", "customer_verified", 1, call_id=failed)

    assert unbound.verified is False
    assert bound_to_failure.verified is False


def test_current_context_is_none_outside_any_context():
    assert current_context() is None


def test_entering_a_context_makes_it_current_and_leaving_restores_the_previous_one(fake: FakeSideband):
    outer, inner = fake.context("outer"), fake.context("inner")

    with outer:
        assert current_context() is outer
        with inner:
            assert current_context() is inner
        assert current_context() is outer
    assert current_context() is None


def test_leaving_a_context_through_an_exception_still_restores_the_previous_one(fake: FakeSideband):
    with pytest.raises(RuntimeError), fake.context("s1"):
        raise RuntimeError("agent failed")

    assert current_context() is None


def test_nested_helpers_find_the_context_without_it_being_passed(fake: FakeSideband):
    def lookup_order(order_id: int) -> dict[str, int]:
        result = {"id": order_id}
        ctx = current_context()
        assert ctx is not None
        ctx.mark_evidence("orders.lookup", "order_data", result)
        return result

    with fake.context("s1"):
        lookup_order(7)

    assert fake.state("s1").evidence["order_data"].data == {"id": 7}


def test_re_entering_the_same_context_keeps_it_open_until_the_outermost_exit(fake: FakeSideband):
    ctx = fake.context("s1")

    with ctx:
        with ctx:
            assert current_context() is ctx
        assert current_context() is ctx
        ctx.set("still", "open")
    assert current_context() is None
    with pytest.raises(helio.HelioError):
        ctx.set("now", "closed")


def test_a_new_thread_sees_no_context_unless_it_runs_in_a_copy_of_the_current_one(fake: FakeSideband):
    seen: dict[str, object] = {}

    with fake.context("s1") as ctx:
        _in_thread(lambda: seen.setdefault("plain", current_context()))
        copied = contextvars.copy_context()
        _in_thread(lambda: seen.setdefault("copied", copied.run(current_context)))

    if not getattr(sys.flags, "thread_inherit_context", False):
        assert seen["plain"] is None
    assert seen["copied"] is ctx


def test_a_context_entered_in_another_thread_does_not_leak_into_this_one(fake: FakeSideband):
    seen: dict[str, object] = {}

    def worker() -> None:
        with fake.context("worker") as ctx:
            seen["worker"] = current_context() is ctx

    with fake.context("main") as main:
        _in_thread(worker)
        assert current_context() is main
    assert seen["worker"] is True


def test_require_evidence_from_many_threads_keeps_every_key(fake: FakeSideband):
    ctx = fake.context("s1")
    threads = [threading.Thread(target=ctx.require_evidence, args=([f"key-{n}"],)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert sorted(ctx.get_evidence_state().required) == sorted(f"key-{n}" for n in range(32))


def test_async_with_makes_the_context_current_and_the_a_methods_reach_the_sideband(fake: FakeSideband):
    async def agent() -> helio.EvidenceStateReport:
        async with fake.context("s1") as ctx:
            assert current_context() is ctx
            ctx.require_evidence(["order_data"])
            receipt = await ctx.amark_evidence("orders.lookup", "order_data", {"id": 7}, ttl=30)
            assert receipt.expires_at == 1_700_000_030_000
            await ctx.aset("tier", "gold")
            await ctx.adeclare_dependency("orders.refund", ["orders.lookup"])
            report = await ctx.aget_evidence_state()
        assert current_context() is None
        return report

    report = asyncio.run(asyncio.wait_for(agent(), timeout=5))

    assert report.satisfied == ["order_data"]
    assert report.state.context == {"tier": "gold"}
    assert report.state.dependencies == [helio.DeclaredDependency("orders.refund", ["orders.lookup"])]


def test_the_a_methods_do_not_block_the_event_loop_thread(fake: FakeSideband):
    threads_used: list[int] = []

    def recording(request: TransportRequest) -> TransportResponse:
        threads_used.append(threading.get_ident())
        return fake(request)

    async def agent() -> int:
        async with HelioContext(fake.url, "s1", token=fake.token, transport=recording) as ctx:
            await ctx.aset("k", 1)
            await ctx.aget_evidence_state()
        return threading.get_ident()

    loop_thread = asyncio.run(asyncio.wait_for(agent(), timeout=5))

    assert len(threads_used) == 2
    assert loop_thread not in threads_used


def test_tasks_see_the_context_current_at_their_creation_and_keep_their_own(fake: FakeSideband):
    async def main() -> None:
        both_entered = asyncio.Event()
        entered: list[str] = []

        async def task(name: str) -> str | None:
            assert current_context() is outer
            async with fake.context(name):
                entered.append(name)
                if len(entered) == 2:
                    both_entered.set()
                await both_entered.wait()
                ctx = current_context()
                return ctx.session_id if ctx else None

        async with fake.context("outer") as outer:
            results = await asyncio.gather(task("a"), task("b"))
            assert results == ["a", "b"]
            assert current_context() is outer

    asyncio.run(asyncio.wait_for(main(), timeout=5))
