"""examples/observability: the scrape config, alert rules and Grafana dashboard parse, and every
metric they name is in a real scrape of the proxy's /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import mcp_upstream, run_proxy
from tests.integration.approval_support import SECRET, approval_config, raw_call

ASSETS = Path(__file__).resolve().parents[2] / "examples" / "observability"
NAME = re.compile(r"\bhelio_[a-z_]+\b")
BUDGET = """
budgets:
  - name: daily
    limit: 100
    window: 24h
    contributors: [{match: {tool: create_payment}, field: '$.amount'}]
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


async def test_every_metric_the_assets_name_is_in_a_real_scrape() -> None:
    async with mcp_upstream(stateless=True) as upstream, run_proxy(approval_config(upstream, BUDGET)) as app:
        await raw_call(app.mcp_url, "search_docs", {"query": "q"})
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{app.dashboard_url}/metrics", headers={"authorization": f"Bearer {SECRET}"}
            )
    assert response.status_code == 200
    names = exposed(response.text)
    referenced = {name for expr in expressions() for name in NAME.findall(expr)}
    assert len(referenced) >= 10
    missing = referenced - names
    assert not missing, f"named by the assets but not exposed: {sorted(missing)}"


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
