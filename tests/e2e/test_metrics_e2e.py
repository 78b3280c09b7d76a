"""``/metrics`` of a real ``helio start``: parsed with prometheus_client's own parser, every counter
moves by exactly the calls made; with ``--workers 2`` worker 0's scrape adds up both workers
(counters, histograms and open streams)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.e2e.test_limits_e2e import call, established_on, stop, succeeded, worker_pids

pytestmark = pytest.mark.e2e

POLICIES = """policies:
  rules:
    - match: {tool: 'delete_*'}
      action: deny
    - name: weather
      match: {tool: get_weather}
      action: rate_limit
      limits: {max_calls: 2, window: 1h, key: tool}
"""


STREAMS = 8
"""Legacy SSE streams opened on two workers (all on one worker: a 1-in-128 chance)."""
WORKERS_READY_SECONDS = 180.0
"""Ceiling for two workers to come up: ~36 s was seen on a loaded 2-core machine, so the wait is on
readiness (each worker listening, worker 0's dashboard answering), with room to spare."""


async def workers_ready(
    proxy: subprocess.Popen[str], port: int, dashboard_port: int, *, count: int
) -> list[int]:
    """The supervisor's ``count`` workers, once each listens on ``port`` and ``/healthz`` and worker
    0's ``/metrics`` answer (bounded by :data:`WORKERS_READY_SECONDS`)."""
    deadline = time.monotonic() + WORKERS_READY_SECONDS
    workers: list[int] = []
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            assert proxy.poll() is None, f"helio start exited with {proxy.returncode}"
            workers = worker_pids(proxy.pid)
            if len(workers) == count and all(established_on(pid, port, "0A") for pid in workers):
                try:
                    health = await http.get(f"http://127.0.0.1:{port}/healthz")
                    metrics = await http.get(f"http://127.0.0.1:{dashboard_port}/metrics")
                except httpx.TransportError:
                    pass
                else:
                    if health.status_code == 200 and metrics.status_code == 200:
                        return workers
            await asyncio.sleep(0.2)
    raise AssertionError(f"{count} workers were not ready within {WORKERS_READY_SECONDS}s (saw {workers})")


def config_text(proxy_port: int, dashboard_port: int, upstream_port: int, down_port: int, audit: Path) -> str:
    return (
        "version: '1'\n"
        "upstreams:\n"
        f"  - name: demo\n    url: 'http://127.0.0.1:{upstream_port}/mcp'\n"
        f"  - name: down\n    url: 'http://127.0.0.1:{down_port}/mcp'\n"
        f"listen:\n  port: {proxy_port}\n"
        f"audit:\n  path: '{audit}'\n"
        f"dashboard:\n  port: {dashboard_port}\n  api_secret: test-secret-metrics\n" + POLICIES
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_counters_move_by_exactly_the_calls_made(tmp_path: Path, demo_port: int) -> None:
    proxy_port, dashboard_port, upstream_port, down_port = free_port(), free_port(), demo_port, free_port()
    path = tmp_path / "helio.yaml"
    path.write_text(config_text(proxy_port, dashboard_port, upstream_port, down_port, tmp_path / "audit.db"))
    with running(helio("start", "-c", str(path))) as proxy:
        wait_for_port(dashboard_port, proxy)
        wait_for_port(proxy_port, proxy)
        metrics_url = f"http://127.0.0.1:{dashboard_port}/metrics"
        async with httpx.AsyncClient(timeout=30) as http:
            before = scrape((await http.get(metrics_url)).text)
            demo = f"http://127.0.0.1:{proxy_port}/mcp/demo"
            allowed = [await call(http, demo, i, "search_docs", {"query": "x"}) for i in range(3)]
            denied = [await call(http, demo, 10 + i, "delete_user", {"user_id": "u"}) for i in range(2)]
            weather = [await call(http, demo, 20 + i, "get_weather", {"city": "Paris"}) for i in range(5)]
            failed = await call(
                http, f"http://127.0.0.1:{proxy_port}/mcp/down", 30, "search_docs", {"query": "x"}
            )
            response = await http.get(metrics_url)
            refused_post = await http.post(metrics_url)
        stop(proxy)
    assert all(succeeded(a) for a in allowed)
    assert [a["error"]["data"]["reason"] for a in denied] == ["policy_denied"] * 2
    assert [succeeded(a) for a in weather] == [True, True, False, False, False]
    assert {a["error"]["data"]["reason"] for a in weather[2:]} == {"rate_limited"}
    assert failed["error"]["data"]["failure_class"] == "upstream_forward_error"
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert refused_post.status_code == 405
    after = scrape(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "helio_tool_calls_total"
    assert moved(calls, tool="search_docs", decision="allow", reason="", upstream="demo") == 3
    assert moved(calls, tool="delete_user", decision="deny", reason="policy_denied", upstream="demo") == 2
    assert moved(calls, tool="get_weather", decision="rate_limit", reason="") == 2
    assert moved(calls, tool="get_weather", reason="rate_limited", upstream="demo") == 3
    assert moved(calls, upstream="down") == 1
    assert moved(calls) == 11
    assert (
        moved("helio_upstream_failures_total", upstream="down", failure_class="upstream_forward_error") == 1
    )
    assert moved("helio_upstream_failures_total") == 1
    # Forwarded calls: 3 allowed + 2 weather + 1 to the dead upstream; blocked ones count overhead too.
    assert moved("helio_proxy_overhead_seconds_count") == 11
    assert moved("helio_proxy_overhead_seconds_sum") > 0
    assert moved("helio_proxy_overhead_seconds_bucket", le="+Inf") == 11
    assert moved("helio_proxy_overhead_seconds_bucket", le="1.0") == 11  # under a second each
    assert moved("helio_upstream_latency_seconds_count", upstream="demo") == 5
    assert value(after, "helio_limit_utilisation_ratio", rule="weather", kind="rate") == 1  # 2 of 2
    assert value(after, "helio_approvals_pending") == 0
    assert value(after, "helio_audit_queue_depth") >= 0
    assert ("helio_audit_records_written_total", frozenset()) in after


async def test_worker_0_scrape_adds_up_every_worker(tmp_path: Path, demo_port: int) -> None:
    proxy_port, dashboard_port, upstream_port = free_port(), free_port(), demo_port
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n"
        f"listen:\n  port: {proxy_port}\n"
        f"audit:\n  path: '{tmp_path / 'audit.db'}'\n"
        f"dashboard:\n  port: {dashboard_port}\n  api_secret: test-secret-metrics\n"
    )
    with running(helio("start", "-c", str(path), "--workers", "2")) as proxy:
        workers = await workers_ready(proxy, proxy_port, dashboard_port, count=2)
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            url = f"http://127.0.0.1:{proxy_port}/mcp"
            answers = await asyncio.gather(
                *(call(http, url, i, "search_docs", {"query": "q"}) for i in range(60))
            )
            served = [established_on(pid, proxy_port) for pid in workers]
            metrics_url = f"http://127.0.0.1:{dashboard_port}/metrics"
            scraped = scrape((await http.get(metrics_url)).text)
        # Legacy SSE streams land on either worker (SO_REUSEPORT); worker 0's scrape counts them all.
        async with httpx.AsyncClient(timeout=60) as http, contextlib.AsyncExitStack() as streams:
            for _ in range(STREAMS):
                opened = await streams.enter_async_context(
                    http.stream(
                        "GET", f"http://127.0.0.1:{proxy_port}/sse", headers={"accept": "text/event-stream"}
                    )
                )
                assert opened.status_code == 200
            streaming = scrape((await http.get(metrics_url)).text)
        stop(proxy)
    assert all(succeeded(a) for a in answers)
    assert all(n > 0 for n in served), served  # both workers took calls
    assert value(scraped, "helio_tool_calls_total", tool="search_docs", decision="allow") == 60
    assert value(scraped, "helio_proxy_overhead_seconds_count") == 60
    assert value(streaming, "helio_streams_open", transport="sse") == STREAMS
