"""The operator console in a real browser (Debian's Chromium through Playwright) against a real
``helio start`` and real agents (the official ``mcp`` client).

One proxy serves the whole module; the tests run in file order and build on each other's data
(the screenshots and the accessibility scan come last so every screen has something to show).
Screenshots land in ``test-artifacts/console/`` at 1280x800 and 390x844.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect, sync_playwright

from helio_proxy.operator.auth import secret_digest
from tests.e2e.conftest import free_port, helio, wait_for_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
AXE = ROOT / "packages" / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
ADMIN = "admin-secret-for-the-browser-tests-0123"
VIEWER = "viewer-secret-for-the-browser-tests-0123"
SESSION = "browser-agent-1"
DRIFTED = "Current weather for a city, now with forecasts (changed upstream)."


@dataclass
class Stack:
    proxy: int
    dashboard: int
    upstream: int
    tmp: Path
    restart_upstream: Callable[[str], None]

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    @property
    def mcp(self) -> str:
        return f"http://127.0.0.1:{self.proxy}/mcp"

    def api(self, secret: str = ADMIN) -> httpx.Client:
        return httpx.Client(base_url=self.console, headers={"authorization": f"Bearer {secret}"}, timeout=10)


def _config(tmp: Path, proxy: int, dashboard: int, upstream: int) -> Path:
    path = tmp / "helio.yaml"
    path.write_text(
        f"""version: '1'
upstream:
  url: 'http://127.0.0.1:{upstream}/mcp'
listen:
  port: {proxy}
policies:
  hot_reload: false
  rules:
    - name: block-destructive
      match: {{annotations: {{destructiveHint: true}}}}
      action: deny
    - name: approve-payments
      match: {{tool: create_payment}}
      action: require_approval
      approval: {{timeout: 2m}}
budgets:
  - name: payments
    limit: 1000
    currency: USD
    window: 1d
    key: global
    on_exceed: deny
    contributors:
      - match: {{tool: create_payment}}
        field: '$.amount'
audit:
  path: '{tmp / "audit.db"}'
dashboard:
  port: {dashboard}
  api_secret: '{ADMIN}'
  operators:
    - {{name: vera, secret_hash: '{secret_digest(VIEWER)}', roles: [viewer]}}
"""
    )
    return path


@contextmanager
def _process(args: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A child whose output goes to a file (nobody has to drain a pipe); SIGTERM and reap it after."""
    with log.open("a") as sink:
        process = subprocess.Popen(args, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@contextmanager
def _upstream(port: int, description: str, log: Path) -> Iterator[None]:
    args = [
        *helio()[:1],
        "-m",
        "tests.browser.upstream",
        "--port",
        str(port),
        "--weather-description",
        description,
    ]
    with _process(args, log, ROOT) as server:
        wait_for_port(port, server)
        yield


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    proxy, dashboard, upstream = free_port(), free_port(), free_port()
    config = _config(tmp, proxy, dashboard, upstream)
    with ExitStack() as upstream_stack, ExitStack() as outer:
        upstream_stack.enter_context(
            _upstream(upstream, "Current weather for a city (canned data).", tmp / "up.log")
        )

        def restart(description: str) -> None:
            upstream_stack.close()
            upstream_stack.enter_context(_upstream(upstream, description, tmp / "up.log"))

        process = outer.enter_context(_process(helio("start", "-c", str(config)), tmp / "helio.log", tmp))
        wait_for_port(proxy, process)
        wait_for_port(dashboard, process)
        yield Stack(proxy, dashboard, upstream, tmp, restart)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


_agents = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agent")


def agent(make: Callable[[], Coroutine[Any, Any, Any]]) -> Future[Any]:
    """Run an agent coroutine (the official MCP client) in its own thread and event loop."""
    return _agents.submit(lambda: asyncio.run(make()))


async def call(url: str, tool: str, arguments: dict[str, Any], *, session: str = SESSION) -> Any:
    """One tool call; an MCP error is raised after the client has closed (not inside its task group)."""
    async with Client(url, mode="legacy") as client:
        try:
            return await client.call_tool(tool, arguments, meta={"io.gethelio/session-id": session})  # type: ignore[arg-type]
        except MCPError as exc:
            failure = exc
    raise failure


async def list_tools(url: str) -> list[str]:
    async with Client(url, mode="legacy") as client:
        return [t.name for t in (await client.list_tools()).tools]


class Console:
    """A logged-in page that fails the test on any console error."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        # Counts the console's beeps: each one makes an AudioContext.
        context.add_init_script(
            "window.__beeps = 0; const Real = window.AudioContext;"
            "window.AudioContext = class extends Real { constructor(...a) { super(...a); window.__beeps++; } };"
        )
        self.page: Page = context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every 4xx fetch; the one expected is the logged-out "who am I?" probe (401).
        if message.type == "error" and "status of 401" not in message.text:
            self.errors.append(message.text)

    def login(self, secret: str) -> None:
        self.page.goto(self.base + "/")
        self.page.get_by_label("Secret").fill(secret)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("navigation", name="Screens")).to_be_visible()

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page


@pytest.fixture(scope="module")
def admin(browser: Browser, stack: Stack) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    console = Console(context, stack.console)
    console.login(ADMIN)
    yield console
    context.close()
    assert console.errors == [], console.errors


def _pending_ticket(stack: Stack) -> dict[str, Any]:
    with stack.api() as api:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tickets = api.get("/api/approvals", params={"status": "pending"}).json()["data"]
            if tickets:
                return tickets[0]
            time.sleep(0.05)
    raise AssertionError("no ticket was opened")


def test_the_login_page_refuses_a_wrong_secret_and_admits_the_right_one(
    browser: Browser, stack: Stack
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.console + "/audit?tool=get_weather")
    page.get_by_label("Secret").fill("not-the-secret")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong secret.")
    page.get_by_label("Secret").fill(ADMIN)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Audit")).to_be_visible()
    assert page.url.endswith("/audit?tool=get_weather")  # the page asked for, kept through login
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Secret")).to_be_visible()
    assert page.request.get(stack.console + "/api/auth/session").status == 401  # the cookie is gone
    context.close()


def test_an_agents_call_appears_in_the_feed_within_a_second(admin: Console, stack: Stack) -> None:
    page = admin.go("/feed")
    expect(page.get_by_role("heading", name="Feed")).to_be_visible()
    page.wait_for_timeout(300)  # the event stream is open
    result = agent(lambda: call(stack.mcp, "get_weather", {"city": "Oslo"})).result(timeout=20)
    answered = time.monotonic()
    assert result.is_error is False
    row = page.locator("tr.feed-row", has_text="get_weather").first
    expect(row).to_be_visible(timeout=1000)
    assert time.monotonic() - answered < 1.0
    expect(row.get_by_text("allow")).to_be_visible()
    blocked = agent(lambda: call(stack.mcp, "delete_user", {"user_id": "u-1"}))
    with pytest.raises(MCPError):
        blocked.result(timeout=20)
    denied = page.locator("tr.feed-row", has_text="delete_user").first
    expect(denied).to_be_visible(timeout=1000)
    expect(denied.locator(".badge")).to_have_class("badge d-deny")
    # Click-through to the audit record.
    row.get_by_role("link", name="get_weather").click()
    expect(page.get_by_role("heading", name="Audit record")).to_be_visible()
    expect(page.get_by_text('"city": "Oslo"')).to_be_visible()


def test_a_call_made_while_the_event_stream_was_down_appears_in_the_feed_once_it_reopens(
    browser: Browser, stack: Stack, admin: Console
) -> None:
    """The Feed fetches the latest calls again whenever its event stream (re)opens: a call made
    while the stream was down (long enough for the proxy to stop tailing the trail for it) is
    not missing from the list. The stream is cut from outside (``ss -K``, as a network blip
    would), and its reconnection is held until the call's record is written."""
    # The cut aborts every connection to the console's port: the shared admin page must have no
    # stream open then (its next test opens it again).
    admin.page.goto("about:blank")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    console = Console(context, stack.console)
    try:
        console.login(ADMIN)
        page = console.go("/feed")
        expect(page.get_by_role("heading", name="Feed")).to_be_visible()
        page.wait_for_timeout(500)  # the event stream is open
        held: list[Route] = []
        page.route("**/api/events", lambda route: held.append(route))  # reconnections wait, unanswered
        cut = subprocess.run(
            ["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(stack.dashboard)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert cut.returncode == 0, cut.stderr
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:  # the browser retries after ~3 s
            page.wait_for_timeout(100)
        assert held, "the event stream was not reopened after the cut"
        session = "browser-agent-reconnect"
        agent(lambda: call(stack.mcp, "get_weather", {"city": "Bergen"}, session=session)).result(timeout=20)
        with stack.api() as api:
            deadline = time.monotonic() + 10
            while not api.get("/api/feed", params={"session": session}).json()["data"]:
                assert time.monotonic() < deadline, "the call's record was not written"
                time.sleep(0.05)
        row = page.locator("tr.feed-row", has_text=session)
        page.wait_for_timeout(500)
        expect(row).to_have_count(0)  # nothing reached the page while the stream was down
        for route in held:
            route.continue_()
        page.unroute("**/api/events")
        expect(row).to_have_count(1, timeout=5000)
        expect(row.get_by_text("allow")).to_be_visible()
    finally:
        context.close()
    # The cut aborts the stream's connection, which Chromium logs; nothing else may fail.
    assert [e for e in console.errors if "ERR_CONNECTION_ABORTED" not in e] == [], console.errors


def test_approving_a_held_call_completes_the_agents_call_with_the_upstreams_result(
    admin: Console, stack: Stack
) -> None:
    page = admin.go("/feed")
    page.evaluate("window.__beeps = 0")
    page.wait_for_timeout(300)  # the event stream is open
    payment = agent(lambda: call(stack.mcp, "create_payment", {"amount": 250, "recipient": "acme"}))
    # A new ticket: a count in the tab title and the navigation, and a beep (WebAudio).
    expect(page).to_have_title("(1) Helio console", timeout=5000)
    expect(page.get_by_role("link", name="Approvals").locator(".count")).to_have_text("1")
    assert page.evaluate("window.__beeps") == 1
    page.get_by_role("link", name="Approvals").click()
    expect(page).to_have_title("Helio console")
    ticket = page.locator("article.ticket", has_text="create_payment")
    expect(ticket).to_be_visible(timeout=5000)
    expect(ticket.get_by_text('"recipient": "acme"')).to_be_visible()
    expect(ticket.get_by_role("timer")).to_contain_text("left")
    expect(ticket.get_by_text("0 of 1")).to_be_visible()
    assert not payment.done()
    ticket.get_by_role("button", name="Approve").click()
    result = payment.result(timeout=20)
    assert result.is_error is False
    assert result.structured_content == {"status": "created", "amount": "250.0", "recipient": "acme"}
    expect(ticket).to_have_count(0)


def test_denying_with_a_reason_gives_the_agent_approval_denied_with_it(admin: Console, stack: Stack) -> None:
    page = admin.go("/approvals")
    refused = agent(lambda: call(stack.mcp, "create_payment", {"amount": 99999, "recipient": "mallory"}))
    ticket = page.locator("article.ticket", has_text="mallory")
    expect(ticket).to_be_visible(timeout=5000)
    ticket.get_by_label("Reason or comment").fill("amount over the limit")
    ticket.get_by_role("button", name="Deny").click()
    with pytest.raises(MCPError) as caught:
        refused.result(timeout=20)
    assert caught.value.code == -32001
    assert caught.value.data["reason"] == "approval_denied"
    assert caught.value.data["denial_reason"] == "amount over the limit"


def test_an_expired_session_asks_for_the_secret_again_without_losing_the_page(
    browser: Browser, stack: Stack
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    console = Console(context, stack.console)
    console.login(ADMIN)
    page = console.go("/audit?tool=get_weather")
    page.get_by_label("Agent").fill("typed-but-not-applied")
    context.clear_cookies()  # the session is gone, as after its 8 hours
    page.get_by_role("link", name="Export CSV")  # still on the page
    page.get_by_role("button", name="Apply").click()
    dialog = page.get_by_role("dialog", name="Session expired")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Secret").fill(ADMIN)
    dialog.get_by_role("button", name="Log in").click()
    expect(dialog).to_have_count(0)
    expect(page).to_have_url(f"{stack.console}/audit?tool=get_weather&agent=typed-but-not-applied")
    expect(page.get_by_text("No record matches these filters.")).to_be_visible()
    context.close()
    assert console.errors == [], console.errors


def test_a_viewer_sees_tickets_but_cannot_approve(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    viewer = Console(context, stack.console)
    viewer.login(VIEWER)
    waiting = agent(lambda: call(stack.mcp, "create_payment", {"amount": 5, "recipient": "viewer-test"}))
    page = viewer.go("/approvals")
    ticket = page.locator("article.ticket", has_text="viewer-test")
    expect(ticket).to_be_visible(timeout=5000)
    expect(ticket.get_by_text("can see tickets but not decide them")).to_be_visible()
    assert ticket.get_by_role("button", name="Approve").count() == 0
    assert ticket.get_by_role("button", name="Deny").count() == 0
    # The API says the same to the viewer's own cookie session.
    csrf = page.evaluate("sessionStorage.getItem('helio.csrf')")
    answer = page.request.post(
        f"{stack.console}/api/approvals/{_pending_ticket(stack)['id']}/approve",
        headers={"x-helio-csrf": csrf, "content-type": "application/json"},
        data="{}",
    )
    assert answer.status == 403
    with stack.api() as api:
        api.post(f"/api/approvals/{_pending_ticket(stack)['id']}/deny", json={"reason": "test over"})
    with pytest.raises(MCPError):
        waiting.result(timeout=20)
    context.close()
    assert viewer.errors == [], viewer.errors


def test_an_audit_link_with_filters_shows_only_matching_records_and_exports_them(
    admin: Console, stack: Stack
) -> None:
    def allowed() -> int:
        with stack.api() as api:
            query = {"tool": "get_weather", "decision": "allow", "limit": 100}
            return len(api.get("/api/audit", params=query).json()["data"])

    before = allowed()
    agent(lambda: call(stack.mcp, "get_weather", {"city": "Bergen"})).result(timeout=20)
    # The audit writer batches: the page is opened once the call's record is stored.
    deadline = time.monotonic() + 10
    while allowed() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    page = admin.go("/audit?tool=get_weather&decision=allow")
    rows = page.locator("tr.audit-row")
    expect(rows.first).to_be_visible(timeout=5000)
    tools = rows.locator(".tool").all_inner_texts()
    assert tools, "no record matched"
    assert set(tools) == {"get_weather"}, tools
    assert page.get_by_label("Tool").input_value() == "get_weather"
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(exported) == len(tools)
    assert {r["tool_name"] for r in exported} == {"get_weather"}
    assert {r["policy_decision"] for r in exported} == {"allow"}
    # A filter typed into the form becomes the link.
    page.get_by_label("Tool").fill("delete_user")
    page.get_by_label("Decision").fill("")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(f"{stack.console}/audit?tool=delete_user")
    expect(page.locator("tr.audit-row .tool").first).to_have_text("delete_user")


def test_an_admin_accepts_a_drifted_tool(admin: Console, stack: Stack) -> None:
    stack.restart_upstream(DRIFTED)
    agent(lambda: list_tools(stack.mcp)).result(timeout=20)
    with pytest.raises(MCPError):
        agent(lambda: call(stack.mcp, "get_weather", {"city": "Leeds"})).result(timeout=20)
    page = admin.go("/tools")
    row = page.locator("tr.tool-row[data-tool='get_weather']")
    expect(row.get_by_text("drifted")).to_be_visible(timeout=5000)
    row.get_by_role("button", name="Accept").click()
    expect(row.get_by_text("matches baseline")).to_be_visible(timeout=5000)
    with stack.api() as api:
        [tool] = [t for t in api.get("/api/tools").json()["data"] if t["name"] == "get_weather"]
    assert tool["drift"] is None
    assert tool["accepted_by"] == "api_secret"
    assert tool["description"] == DRIFTED


def test_after_an_acceptance_the_agents_call_goes_through(stack: Stack) -> None:
    result = agent(lambda: call(stack.mcp, "get_weather", {"city": "Leeds"})).result(timeout=20)
    assert result.is_error is False


SCREENS = ["feed", "approvals", "audit", "limits", "budgets", "tools", "sessions", "analytics"]
SIZES = {"1280": (1280, 800), "390": (390, 844)}


def test_every_screen_at_both_widths_with_no_serious_accessibility_violation(
    browser: Browser, stack: Stack
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    held = agent(lambda: call(stack.mcp, "create_payment", {"amount": 12, "recipient": "screenshot"}))
    ticket = _pending_ticket(stack)
    with stack.api() as api:
        session = api.get("/api/audit", params={"tool": "get_weather", "limit": 1}).json()["data"][0]
    extra = {"audit-detail": f"/audit/{session['id']}", "session-detail": f"/sessions/{SESSION}"}
    violations: dict[str, list[str]] = {}
    for size, (width, height) in SIZES.items():
        # bypass_csp: axe-core is injected as an inline script, which the console's CSP forbids.
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        console = Console(context, stack.console)
        page = console.page
        page.goto(stack.console + "/api/health")  # the renderer for this origin is up (not timed)
        page.goto(stack.console + "/")
        expect(page.get_by_label("Secret")).to_be_visible()
        # First load of the console (empty cache) on loopback: navigation start to the load event.
        loaded = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        assert 0 < loaded < 1000, f"first load took {loaded} ms"
        page.screenshot(path=str(ARTIFACTS / f"login-{size}.png"))
        console.login(ADMIN)
        for name, path in [*[(s, f"/{s}") for s in SCREENS], *extra.items()]:
            page.goto(stack.console + path)
            # Drawn and loaded: the screen's heading, and no "Loading" left (the event stream never idles).
            expect(page.locator("main h1").first).to_be_visible()
            page.wait_for_function("() => !document.body.innerText.includes('Loading')")
            page.wait_for_timeout(150)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{size}.png"), full_page=False)
            page.add_script_tag(path=str(AXE))
            found = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
            )
            if found:
                violations[f"{name}-{size}"] = found
        context.close()
        assert console.errors == [], console.errors
    with stack.api() as api:
        api.post(f"/api/approvals/{ticket['id']}/deny", json={"reason": "screenshots done"})
    with pytest.raises(MCPError):
        held.result(timeout=20)
    assert violations == {}, json.dumps(violations, indent=2)
