"""Host, Origin and media-type checks on the agent port."""

from __future__ import annotations

import pytest

from helio_proxy import guards
from helio_proxy.guards import (
    HostGuard,
    OriginGuard,
    accepts_event_stream,
    content_type_essence,
    protocol_header_problem,
)


@pytest.mark.parametrize("host", ["127.0.0.1:3000", "localhost", "LOCALHOST:1", "[::1]:3000", "127.0.0.1"])
def test_loopback_bind_accepts_loopback_host_names(host: str) -> None:
    assert HostGuard("127.0.0.1", None).check(host) is None


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "127.0.0.1.nip.io", None])
def test_loopback_bind_rejects_other_host_names(host: str | None) -> None:
    assert HostGuard("127.0.0.1", None).check(host) is not None


def test_explicit_allowed_hosts_and_open_binds() -> None:
    guard = HostGuard("0.0.0.0", ["mcp.internal"])
    assert guard.check("mcp.internal:3000") is None
    assert guard.check("other") is not None
    assert HostGuard("0.0.0.0", None).check("anything") is None


def test_origin_must_match_exactly() -> None:
    guard = OriginGuard(["https://app.example.com"])
    assert guard.check(None) is None
    assert guard.check("https://app.example.com") is None
    assert guard.check("https://app.example.com.evil") is not None
    assert guard.check("null") is not None


def test_content_type_essence_and_accept() -> None:
    assert content_type_essence("Application/JSON ; charset=utf-8") == "application/json"
    assert content_type_essence(None) == ""
    assert accepts_event_stream("application/json, text/event-stream")
    assert not accepts_event_stream("*/*")
    assert not accepts_event_stream(None)


def test_accept_answers_are_kept_for_a_bounded_number_of_values() -> None:
    for n in range(200):  # a client sending a new Accept value each time cannot grow the cache
        assert accepts_event_stream(f"text/event-stream;q=0.{n}, application/json") is True
        assert accepts_event_stream(f"application/json;v={n}") is False
    assert len(guards._accepts) <= guards._ACCEPTS_SEEN  # pyright: ignore[reportPrivateUsage]
    assert accepts_event_stream("TEXT/Event-Stream ; q=1") is True  # kept or not, the same answer
    assert accepts_event_stream("TEXT/Event-Stream ; q=1") is True


@pytest.mark.parametrize(
    "origin", ["http://localhost:6274", "http://127.0.0.1:3000", "http://[::1]:8080", "https://localhost"]
)
def test_loopback_origins_are_accepted_when_bound_to_loopback(origin: str) -> None:
    assert OriginGuard([], "127.0.0.1").check(origin) is None
    assert OriginGuard([], "0.0.0.0").check(origin) is not None
    assert OriginGuard([]).check(origin) is not None


@pytest.mark.parametrize(
    "origin", ["http://localhost.evil.example", "http://127.0.0.1.nip.io", "null", "http://evil.example"]
)
def test_other_origins_are_refused_on_loopback_unless_listed(origin: str) -> None:
    assert OriginGuard([], "127.0.0.1").check(origin) is not None
    assert OriginGuard(["http://evil.example"], "127.0.0.1").check("http://evil.example") is None


def test_allowed_hosts_add_to_loopback_names_on_a_loopback_bind() -> None:
    guard = HostGuard("127.0.0.1", ["proxy.internal"])
    assert guard.check("localhost:3000") is None
    assert guard.check("proxy.internal:3000") is None
    assert guard.check("evil.example") is not None


def test_relayed_mcp_headers_must_be_printable_ascii() -> None:
    assert protocol_header_problem({"mcp-session-id": "abc-123", "last-event-id": "7 8"}) is None
    assert (
        protocol_header_problem({"last-event-id": "jzô±s"})
        == "the last-event-id header must be printable ASCII"
    )
    assert (
        protocol_header_problem({"mcp-session-id": "a\x01b"})
        == "the mcp-session-id header must be printable ASCII"
    )
