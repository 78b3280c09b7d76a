"""Telemetry cost per call: the same proxy with traces off and on, interleaved in one run.

Three proxies on one minimal upstream in one process and event loop: two with traces off (the
second shows the noise floor of the machine: off vs off) and one with traces on (the OTel SDK
with a batch processor and an exporter that drops the spans, so the figures are the proxy's own
cost of building and ending them, not a collector's; the MCP duration histograms are aggregated by
the SDK). Prometheus metrics are always on in all three.

    uv run python benchmarks/bench_telemetry.py [--calls 2000] [--rounds 4] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_proxy_overhead import RESULT, sequential, throughput

from helio_proxy.app import HelioApp
from helio_proxy.config import load_config_text
from helio_proxy.telemetry.tracing import Tracing
from helio_proxy.transports.downstream.asgi import read_body
from tests.harness import proxy_config, serve_asgi

ECHO = {"name": "echo", "inputSchema": {"type": "object"}}


async def listed_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The overhead benchmark's minimal upstream, also answering ``tools/list`` with the called tool
    (otherwise the proxy keeps re-listing an unknown tool: a round trip the figures should not hold)."""
    if scope["type"] != "http":
        return
    request = json.loads(await read_body(receive, 1 << 20))
    result = {"tools": [ECHO]} if request.get("method") == "tools/list" else RESULT
    payload = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": result}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


class Dropping(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


@asynccontextmanager
async def proxy(url: str, tracing: Tracing | None) -> AsyncGenerator[HelioApp]:
    app = HelioApp(
        load_config_text(proxy_config(url), path="bench.yaml"), out=io.StringIO(), environ={}, tracing=tracing
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def main(calls: int, rounds: int, concurrency: int) -> None:
    exporter = Dropping()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()  # the MCP duration histograms are aggregated as in production
    tracing = Tracing(provider, MeterProvider(metric_readers=[reader]))
    names = ("off", "off (again)", "on")
    latencies: dict[str, list[float]] = {name: [] for name in names}
    rps: dict[str, list[float]] = {name: [] for name in names}
    async with serve_asgi(listed_upstream, lifespan="off") as base, AsyncExitStack() as stack:
        urls = {
            "off": (await stack.enter_async_context(proxy(f"{base}/mcp", None))).mcp_url,
            "off (again)": (await stack.enter_async_context(proxy(f"{base}/mcp", None))).mcp_url,
            "on": (await stack.enter_async_context(proxy(f"{base}/mcp", tracing))).mcp_url,
        }
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for url in urls.values():
                await sequential(session, url, 200)
            for _ in range(rounds):
                for name in names:
                    latencies[name] += await sequential(session, urls[name], calls // rounds)
                for name in names:
                    rps[name].append(await throughput(session, urls[name], calls // rounds, concurrency))
    provider.shutdown()

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(
        f"{calls} sequential calls per variant, {rounds} interleaved rounds; spans exported: {exporter.spans}"
    )
    for name in names:
        print(
            f"  traces {name:12s} p50 {ms(latencies[name], 50):.3f} ms  p99 {ms(latencies[name], 99):.3f} ms  "
            f"throughput at {concurrency}: {statistics.median(rps[name]):,.0f} calls/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.concurrency))
