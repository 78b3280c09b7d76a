"""A block whose cause is temporary says so: with the upstream down at first start, the proxy
does not know a read-only tool's annotations yet, so the block is ``baselines_unavailable`` with
``retry_allowed: true``, not a final ``policy_denied`` (issue 19, point 7)."""

from __future__ import annotations

import httpx

from helio_proxy.server import bind
from tests.harness import proxy_config, run_proxy

POLICY = """
policies:
  default: deny
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
"""

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _blocked(http: httpx.AsyncClient, url: str, name: str) -> dict[str, object]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    response = await http.post(url, json=body, headers=HEADERS)
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == -32001
    return error["data"]


async def test_with_the_upstream_down_at_start_a_call_the_annotations_decide_is_retryable() -> None:
    closed = bind("127.0.0.1", 0, "test")
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the primer cannot list the tools
    async with run_proxy(proxy_config(f"http://127.0.0.1:{port}/mcp", POLICY)) as app:
        async with httpx.AsyncClient(timeout=10) as http:
            read = await _blocked(http, app.mcp_url, "get_weather")
            delete = await _blocked(http, app.mcp_url, "delete_user")
    assert (read["reason"], read["retry_allowed"]) == ("baselines_unavailable", True)
    assert str(read["suggestion"]).startswith("Retry in a few seconds")
    # A rule that blocks whatever the annotations say stays final.
    assert (delete["reason"], delete["rule"], delete["retry_allowed"]) == (
        "policy_denied",
        "no-deletes",
        False,
    )
