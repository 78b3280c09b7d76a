"""Session identity: the ordered ``session.identity`` chain and its value rules."""

from __future__ import annotations

from typing import Any

import pytest

from helio import HelioContext
from helio_proxy.config.sections import IdentitySource, SessionConfig
from helio_proxy.session import ANONYMOUS_SESSION, SessionIdentity, SessionResolver, resolve_session

DEFAULT_CHAIN = SessionConfig().identity
HEADER = IdentitySource(source="header", name="x-helio-session-id")
META = IdentitySource(source="meta")
LEGACY = IdentitySource(source="legacy_header")


def client_info(name: Any = "claude-code", version: Any = "1.2.3") -> dict[str, Any]:
    return {"_meta": {"io.modelcontextprotocol/clientInfo": {"name": name, "version": version}}}


def test_default_chain_prefers_the_helio_header_over_mcp_session_id() -> None:
    headers = {"x-helio-session-id": "run-42", "mcp-session-id": "transport-1"}
    assert resolve_session(DEFAULT_CHAIN, headers, None) == SessionIdentity("run-42", "header")


def test_default_chain_falls_back_to_mcp_session_id_verbatim() -> None:
    identity = resolve_session(DEFAULT_CHAIN, {"mcp-session-id": " Abc-1 "}, None)
    assert identity == SessionIdentity(" Abc-1 ", "legacy_header")


def test_chain_order_is_the_configured_order() -> None:
    headers = {"x-helio-session-id": "run-42", "mcp-session-id": "transport-1"}
    identity = resolve_session([LEGACY, META, HEADER], headers, client_info())
    assert identity == SessionIdentity("transport-1", "legacy_header")
    identity = resolve_session([META, HEADER], headers, client_info())
    assert identity == SessionIdentity("clientinfo:claude-code@1.2.3", "meta")


def test_header_source_reads_the_named_header_case_insensitively() -> None:
    chain = [IdentitySource(source="header", name="X-Agent-Run")]
    assert resolve_session(chain, {"x-agent-run": "r1"}, None).session_id == "r1"


@pytest.mark.parametrize("value", ["", "   ", "x" * 257])
def test_empty_blank_or_oversized_values_are_skipped(value: str) -> None:
    headers = {"x-helio-session-id": value, "mcp-session-id": "fallback"}
    assert resolve_session(DEFAULT_CHAIN, headers, None) == SessionIdentity("fallback", "legacy_header")


def test_a_value_of_exactly_256_characters_is_used() -> None:
    value = "s" * 256
    assert resolve_session(DEFAULT_CHAIN, {"x-helio-session-id": value}, None).session_id == value


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"_meta": "nope"},
        {"_meta": {"io.modelcontextprotocol/clientInfo": "nope"}},
        client_info(name=""),
        client_info(version=None),
        client_info(name=7),
        client_info(name="n" * 250, version="1.0.0"),
    ],
)
def test_meta_source_needs_a_usable_client_name_and_version(params: Any) -> None:
    assert resolve_session([META], {}, params) == SessionIdentity(None)


def test_nothing_usable_leaves_the_call_unresolved() -> None:
    identity = resolve_session(DEFAULT_CHAIN, {"x-other": "v"}, client_info())
    assert not identity.resolved
    assert identity.source is None


def test_transport_session_id_is_the_last_resort() -> None:
    identity = resolve_session(DEFAULT_CHAIN, {}, None, transport_session_id="sse-7")
    assert identity == SessionIdentity("sse-7", "transport")
    first = resolve_session(DEFAULT_CHAIN, {"mcp-session-id": "m"}, None, transport_session_id="sse-7")
    assert first.source == "legacy_header"


def test_limit_bucket_pools_unresolved_calls_only_when_anonymous() -> None:
    """Reference: ``anonymous`` pools session-keyed limits into a literal ``unknown`` bucket."""
    unresolved = SessionIdentity(None)
    assert unresolved.limit_bucket("anonymous") == ANONYMOUS_SESSION == "unknown"
    assert unresolved.limit_bucket("deny") is None
    assert SessionIdentity("run-1", "header").limit_bucket("deny") == "run-1"


def test_resolver_uses_the_session_config() -> None:
    config = SessionConfig(identity=[META], on_unresolved="anonymous")
    resolver = SessionResolver(config)
    assert resolver.on_unresolved == "anonymous"
    assert resolver.resolve({"x-helio-session-id": "ignored"}, client_info()).source == "meta"


def helio_meta(session_id: Any) -> dict[str, Any]:
    return {"_meta": {"io.gethelio/session-id": session_id}}


def test_default_chain_reads_the_helio_meta_key_after_the_header_and_before_mcp_session_id() -> None:
    """For transports without headers (``helio wrap``'s stdio): the SDK's ``HelioContext.meta``."""
    assert resolve_session(DEFAULT_CHAIN, {"mcp-session-id": "m"}, helio_meta("run-7")) == SessionIdentity(
        "run-7", "meta"
    )
    both = {"x-helio-session-id": "run-42", "mcp-session-id": "m"}
    assert resolve_session(DEFAULT_CHAIN, both, helio_meta("run-7")) == SessionIdentity("run-42", "header")


@pytest.mark.parametrize("value", [None, 7, {"id": "x"}, "", "  ", "x" * 257])
def test_a_meta_key_whose_value_is_not_a_usable_string_is_skipped(value: Any) -> None:
    identity = resolve_session(DEFAULT_CHAIN, {"mcp-session-id": "m"}, helio_meta(value))
    assert identity == SessionIdentity("m", "legacy_header")


def test_a_meta_source_with_a_name_reads_that_key_and_one_without_reads_the_client_info() -> None:
    params = {"_meta": {"com.example/run": "r-9", **client_info()["_meta"]}}
    named = IdentitySource(source="meta", name="com.example/run")
    assert resolve_session([named, META], {}, params) == SessionIdentity("r-9", "meta")
    assert resolve_session([META, named], {}, params) == SessionIdentity(
        "clientinfo:claude-code@1.2.3", "meta"
    )


@pytest.mark.parametrize("name", ["", " io.gethelio/session-id"])
def test_a_meta_source_name_must_be_a_non_blank_key(name: str) -> None:
    with pytest.raises(ValueError, match="meta key"):
        IdentitySource(source="meta", name=name)


def test_the_default_meta_key_is_the_one_the_sdk_sends() -> None:
    names = [step.name for step in DEFAULT_CHAIN if step.source == "meta"]
    assert names == list(HelioContext("http://127.0.0.1:9", "s", token="").meta)


@pytest.mark.parametrize(
    ("headers", "params", "transport"),
    [
        ({}, None, None),
        ({"x-helio-session-id": "h"}, helio_meta("m"), None),
        ({"mcp-session-id": "legacy"}, helio_meta(""), None),
        ({"x-run": "r"}, client_info(), "t-1"),
        ({}, {"_meta": {"com.example/run": "r-9"}}, "t-2"),
        ({"x-helio-session-id": " "}, None, "x" * 257),
    ],
)
def test_a_resolver_answers_as_resolve_session_over_its_chain(
    headers: dict[str, str], params: dict[str, Any] | None, transport: str | None
) -> None:
    """The resolver compiles its chain once; the answers are the function's."""
    chains = [
        DEFAULT_CHAIN,
        [META],
        [
            IdentitySource(source="header", name="X-Run"),
            IdentitySource(source="meta", name="com.example/run"),
        ],
        [IdentitySource(source="legacy_header"), META],
    ]
    for chain in chains:
        resolver = SessionResolver(SessionConfig(identity=list(chain)))
        assert resolver.resolve(headers, params, transport_session_id=transport) == resolve_session(
            chain, headers, params, transport_session_id=transport
        )
