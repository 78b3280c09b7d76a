"""The Feed at 200 events/s: the page keeps answering clicks and keeps its list capped.

The console's own assets are served by :class:`helio_proxy.console.ConsoleAssets` beside a small
operator API double whose ``/api/events`` pushes ``action`` events at 200 per second for five
seconds, so the rate is exact and does not depend on how fast this shared machine proxies calls.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Mount, Route

from helio_proxy.console import ConsoleAssets, assets_available
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RATE = 200
SECONDS = 5


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse({"data": {"operator": "load", "role": "viewer", "via": "operator"}})


async def _empty(request: Request) -> JSONResponse:
    return JSONResponse({"data": [], "limit": 100, "next_cursor": None})


async def _events(request: Request) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        start = time.monotonic()
        for n in range(RATE * SECONDS):
            # Paced to the schedule, so bursts never exceed what the rate allows.
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            record = {
                "id": f"00000000-0000-0000-0000-{n:012d}",
                "timestamp": time.time(),
                "tool_name": f"tool_{n % 7}",
                "policy_decision": "allow" if n % 5 else "deny",
                "block_reason": None if n % 5 else "policy_denied",
                "agent_id": "load-agent",
                "session_id": f"s-{n % 3}",
                "total_duration_ms": 1.5,
            }
            body = json.dumps({"type": "action", "timestamp": time.time(), "data": record})
            yield f"id: {n}\nevent: action\ndata: {body}\n\n".encode()
        await asyncio.sleep(3600)  # stay open like the real stream

    return StreamingResponse(stream(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    assert assets_available(), "build the console first: ./dev build"
    app = Starlette(
        routes=[
            Route("/api/auth/session", _whoami),
            Route("/api/feed", _empty),
            Route("/api/events", _events),
            Mount("/", ConsoleAssets()),
        ]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    server.force_exit = True
    thread.join(timeout=10)


def test_the_feed_stays_responsive_at_200_events_per_second(site: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        started = time.monotonic()
        page.goto(site + "/feed")
        expect(page.locator("tr.feed-row").first).to_be_visible(timeout=3000)
        # In the page: how late a 50 ms timer fires (main-thread lag), and long tasks.
        page.evaluate(
            """() => {
              window.__lags = []; window.__longest = 0;
              let last = performance.now();
              setInterval(() => { const now = performance.now(); window.__lags.push(now - last - 50); last = now; }, 50);
              new PerformanceObserver(l => l.getEntries().forEach(
                e => { window.__longest = Math.max(window.__longest, e.duration); })).observe({entryTypes: ['longtask']});
            }"""
        )
        delays: list[float] = []
        while time.monotonic() - started < SECONDS - 0.5:
            # A click on Pause/Resume and the frame that shows its result, timed in the page.
            took, pressed_before, pressed_after = page.evaluate(
                """async () => {
                  const b = document.querySelector('button[aria-pressed]');
                  const before = b.getAttribute('aria-pressed');
                  const t = performance.now();
                  b.click();
                  await new Promise(r => requestAnimationFrame(() => r()));
                  const after = document.querySelector('button[aria-pressed]').getAttribute('aria-pressed');
                  return [performance.now() - t, before, after];
                }"""
            )
            assert pressed_before != pressed_after
            delays.append(took)
            rows = page.locator("tr.feed-row").count()
            assert rows <= 250, rows
            page.wait_for_timeout(150)
        if page.locator("button[aria-pressed='true']").count():
            page.locator("button[aria-pressed]").click()
        expect(page.get_by_role("button", name="Pause")).to_be_visible()
        lags = sorted(page.evaluate("window.__lags"))
        longest = page.evaluate("window.__longest")
        page.wait_for_timeout(300)
        shown = page.locator("tr.feed-row").count()
        browser.close()
    p95 = lags[int(len(lags) * 0.95)]
    figures = {"click_to_frame_ms_max": max(delays), "lag_p95_ms": p95, "longest_task_ms": longest}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "feed-load.json").write_text(json.dumps(figures, indent=2))
    assert errors == []
    assert len(delays) >= 10, delays
    # Budgets with room for this shared 2-core machine; a list re-rendered per event misses them.
    assert max(delays) < 250, delays
    assert p95 < 150, f"main-thread lag p95 {p95:.0f} ms"
    assert longest < 250, f"a long task of {longest} ms blocked the page"
    assert shown == 250
