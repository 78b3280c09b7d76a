"""examples/observability: the scrape config, alert rules and Grafana dashboard parse, and every
metric they name is in a real scrape of the proxy's /metrics; docs/observability.md lists exactly
the metrics a scrape exposes; the open-streams and limit-utilisation gauges follow real traffic."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from helio_proxy.app import HelioApp
from tests.harness import mcp_upstream, run_proxy
from tests.integration.approval_support import SECRET, approval_config, raw_call

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "examples" / "observability"
DOCUMENTED = re.compile(r"^\| `(helio_[a-z_]+)` \|", re.MULTILINE)
NAME = re.compile(r"\bhelio_[a-z_]+\b")
BUDGET = """
budgets:
  - name: daily
    limit: 100
    window: 24h
    contributors: [{match: {tool: create_payment}, field: '$.amount'}]
"""
RATE = """
policies:
  rules:
    - name: docs-rate
      match: {tool: search_docs}
      action: rate_limit
      limits: {max_calls: 4, window: 1h, key: tool}
"""


def exposed(text: str) -> set[str]:
    """Every series name the scrape exposes (families with no sample yet included)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
            family.type, ("",)
        )
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def expressions() -> list[str]:
    rules = yaml.safe_load((ASSETS / "alerts.yml").read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard: dict[str, Any] = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_the_assets_parse_and_have_the_expected_shape() -> None:
    scrape = yaml.safe_load((ASSETS / "prometheus.yml").read_text())
    [job] = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert scrape["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((ASSETS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "HelioUpstreamFailing",
        "HelioApprovalsPilingUp",
        "HelioBudgetNearLimit",
        "HelioAuditWriteFailures",
    } <= alerts
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    assert all(panel["targets"] for panel in dashboard["panels"])


async def scrape(app: HelioApp) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{app.dashboard_url}/metrics", headers={"authorization": f"Bearer {SECRET}"}
        )
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


async def test_every_metric_the_assets_and_docs_name_is_in_a_real_scrape() -> None:
    async with mcp_upstream(stateless=True) as upstream, run_proxy(approval_config(upstream, BUDGET)) as app:
        await raw_call(app.mcp_url, "search_docs", {"query": "q"})
        text = await scrape(app)
    names = exposed(text)
    referenced = {name for expr in expressions() for name in NAME.findall(expr)}
    assert len(referenced) >= 10
    missing = referenced - names
    assert not missing, f"named by the assets but not exposed: {sorted(missing)}"
    documented = set(DOCUMENTED.findall((ROOT / "docs" / "observability.md").read_text()))
    families = {family.name for family in text_string_to_metric_families(text)}
    # prometheus-client's ``*_created`` timestamps parse as families of their own.
    families = {
        n for n in families if not (n.endswith("_created") and n.removesuffix("_created") in families)
    }
    # The parser drops a counter's ``_total``; the docs name the series as scraped.
    families = {f"{name}_total" if f"{name}_total" in names else name for name in families}
    assert documented == families, (
        f"documented, not exposed: {sorted(documented - families)}; "
        f"exposed, not documented: {sorted(families - documented)}"
    )


async def test_open_streams_and_limit_utilisation_follow_the_traffic() -> None:
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream, RATE)) as app,
        httpx.AsyncClient(timeout=10) as http,
    ):
        assert sample(await scrape(app), "helio_limit_utilisation_ratio", rule="docs-rate", kind="rate") == 0
        await raw_call(app.mcp_url, "search_docs", {"query": "q"})
        assert (
            sample(await scrape(app), "helio_limit_utilisation_ratio", rule="docs-rate", kind="rate") == 0.25
        )
        sse_url = app.mcp_url.removesuffix("/mcp") + "/sse"
        async with (
            http.stream("GET", app.mcp_url, headers={"accept": "text/event-stream"}) as get,
            http.stream("GET", sse_url, headers={"accept": "text/event-stream"}) as legacy,
        ):
            assert (get.status_code, legacy.status_code) == (200, 200)
            during = await scrape(app)
        async with asyncio.timeout(10):
            while True:  # the proxy sees each disconnect on its own time
                after = await scrape(app)
                if (
                    sample(after, "helio_streams_open", transport="sse")
                    == 0
                    == sample(after, "helio_streams_open", transport="streamable_http")
                ):
                    break
                await asyncio.sleep(0.02)
    assert sample(during, "helio_streams_open", transport="streamable_http") == 1
    assert sample(during, "helio_streams_open", transport="sse") == 1


async def test_scrapes_need_the_bearer_secret_when_configured() -> None:
    config = approval_config("http://127.0.0.1:9/mcp", "telemetry:\n  metrics:\n    auth: bearer\n")
    async with run_proxy(config) as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await http.get("/metrics", headers={"authorization": f"Bearer {SECRET}"})
        posted = await http.post("/metrics", headers={"authorization": f"Bearer {SECRET}"})
        health = await http.get("/api/health")
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert right.headers["content-type"].startswith("text/plain; version=")
    assert "helio_tool_calls" in right.text
    assert posted.status_code == 405
    assert health.status_code == 200  # the operator API behind /metrics is untouched


async def test_loopback_scrapes_are_open_by_default_and_metrics_can_be_turned_off() -> None:
    async with (
        run_proxy(approval_config("http://127.0.0.1:9/mcp")) as app,
        httpx.AsyncClient(base_url=app.dashboard_url) as http,
    ):
        assert (await http.get("/metrics")).status_code == 200
    off = approval_config("http://127.0.0.1:9/mcp", "telemetry:\n  metrics:\n    enabled: false\n")
    async with run_proxy(off) as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
        assert (await http.get("/metrics")).status_code == 404
