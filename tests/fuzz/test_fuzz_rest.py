"""Hostile input on the two REST surfaces: the operator API (``/api/*`` on the dashboard port)
and the SDK sideband. Each input gets an answer that is not a 5xx, every error in the one error
shape ``{error, code, details?}``, and a body past a JSON cap gets 422 ``input_limit_exceeded``
naming the cap. (schemathesis checks the same surfaces against their OpenAPI schemas:
tests/integration/test_operator_api_schemathesis.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.proxy import API_SECRET, SDK_TOKEN, fuzz_proxy
from tests.fuzz.strategies import Body, header_text, rest_bodies
from tests.fuzz.support import (
    TALLY,
    Answer,
    asgi_request,
    fuzz_settings,
    no_errors_logged,
    record_rss,
    variants,
)

_ids = st.sampled_from(["t-1", "nope", "%00", "..", "a" * 300, "%F0%9F%98%80"]) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"), min_size=1, max_size=12
)
OPERATOR_PATHS: Final = st.one_of(
    st.sampled_from(
        [
            "/api/health",
            "/api/auth/session",
            "/api/auth/token-exchange",
            "/api/auth/logout",
            "/api/audit",
            "/api/approvals",
            "/api/limits",
            "/api/budgets",
            "/api/tools",
            "/api/openapi.json",
            "/api/nowhere",
        ]
    ),
    _ids.map(lambda i: f"/api/approvals/{i}/approve"),
    _ids.map(lambda i: f"/api/approvals/{i}/deny"),
    _ids.map(lambda i: f"/api/approvals/{i}/break-glass"),
    _ids.map(lambda i: f"/api/approvals/{i}"),
    _ids.map(lambda i: f"/api/tools/{i}/accept"),
    _ids.map(lambda i: f"/api/audit/{i}"),
)
SIDEBAND_PATHS: Final = st.one_of(
    st.sampled_from(["/evidence", "/context", "/dependencies", "/healthz", "/openapi.json", "/nowhere", "/"]),
    _ids.map(lambda i: f"/session/{i}/state"),
)
_queries = st.sampled_from(
    [b"", b"limit=5", b"limit=-1", b"offset=999999999999", b"cursor=%00", b"since=x"]
) | st.binary(max_size=24)


@st.composite
def rest_headers(draw: st.DrawFn, token: str) -> list[tuple[str, str]]:
    headers = [("host", "127.0.0.1:3100")]
    auth = draw(st.sampled_from(["good"] * 6 + ["none", "wrong", "text"]))
    if auth == "good":
        headers.append(("authorization", f"Bearer {token}"))
    elif auth == "wrong":
        headers.append(("authorization", f"Bearer {token}x"))
    elif auth == "text":
        headers.append(("authorization", draw(header_text)))
    content_type = draw(
        st.sampled_from(["application/json"] * 4 + ["", "text/plain", "application/x-www-form-urlencoded"])
    )
    if content_type:
        headers.append(("content-type", content_type))
    for name, values in {
        "origin": st.sampled_from(["http://127.0.0.1:3100", "https://evil.example", "null"]),
        "cookie": header_text,
        "x-helio-csrf": header_text,
        "content-length": st.sampled_from(["0", "99999999999", "-1", "x"]),
    }.items():
        if draw(st.integers(0, 7)) == 0:
            headers.append((name, draw(values)))
    return headers


def check_rest(answer: Answer, request: str) -> None:
    context = f"{request} -> {answer.status} {answer.body[:240]!r}"
    assert 100 <= answer.status < 500, context
    if answer.status >= 400:
        payload = answer.json()
        assert isinstance(payload, dict), context
        assert isinstance(payload.get("error"), str), context
        assert isinstance(payload.get("code"), str), context


def check_breach(answer: Answer, body: Body) -> None:
    context = f"{body.raw[:120]!r} -> {answer.status} {answer.body[:240]!r}"
    assert answer.status == 422, context
    payload = answer.json()
    assert payload["code"] == "input_limit_exceeded", context
    assert payload["details"]["limit"] == body.breaks, context


async def _campaign(app: Any, surface: str, paths: Any, token: str, breach_path: str) -> None:
    loop = asyncio.get_running_loop()
    good = [
        ("host", "127.0.0.1:3100"),
        ("authorization", f"Bearer {token}"),
        ("content-type", "application/json"),
    ]

    async def send_all(
        method: str, path: str, headers: list[tuple[str, str]], query: bytes, raws: list[bytes]
    ) -> list[Answer]:
        return [await asgi_request(app, method, path, headers=headers, body=raw, query=query) for raw in raws]

    @given(
        body=rest_bodies,
        method=st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "PUT", "OPTIONS"]),
        path=paths,
        headers=rest_headers(token),
        query=_queries,
        seed=st.integers(0, 2**32),
    )
    @fuzz_settings()
    def one(
        body: Body, method: str, path: str, headers: list[tuple[str, str]], query: bytes, seed: int
    ) -> None:
        if body.breaks is not None:
            method, path, headers, query = "POST", breach_path, good, b""
        raws = [body.raw, *variants(body.raw, seed)]
        answers = asyncio.run_coroutine_threadsafe(
            send_all(method, path, headers, query, raws), loop
        ).result()
        TALLY[surface] += len(raws)
        for raw, answer in zip(raws, answers, strict=True):
            check_rest(answer, f"{method} {path}?{query!r} {headers} {raw[:120]!r}")
        if body.breaks is not None:
            check_breach(answers[0], body)

    with no_errors_logged(loop) as errors:
        await asyncio.to_thread(one)
    assert errors == []


async def test_operator_api_answers_every_hostile_input_in_the_error_shape(tmp_path: Path) -> None:
    async with fuzz_proxy(tmp_path) as app:
        assert app.operator_api is not None
        await _campaign(
            app.operator_api,
            "operator API (/api/*)",
            OPERATOR_PATHS,
            API_SECRET,
            "/api/approvals/t-1/approve",
        )
        record_rss("operator")


async def test_sideband_answers_every_hostile_input_in_the_error_shape(tmp_path: Path) -> None:
    async with fuzz_proxy(tmp_path) as app:
        assert app.sideband is not None
        await _campaign(app.sideband, "SDK sideband", SIDEBAND_PATHS, SDK_TOKEN, "/evidence")
        record_rss("sideband")
