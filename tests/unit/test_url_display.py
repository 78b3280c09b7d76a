"""URLs from the config are shown as scheme, host and port; credentials in free text are cut."""

from __future__ import annotations

import pytest

from helio_proxy.url_display import display_url, strip_credentials


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@hooks.example.com/helio?token=abc", "https://hooks.example.com"),
        ("http://user@127.0.0.1:8080/hook#frag", "http://127.0.0.1:8080"),
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com"),
        ("http://a:b@[::1]:9000/x", "http://[::1]:9000"),
        ("postgresql://helio:pw@db.internal:5432/helio", "postgresql://db.internal:5432"),
        ("stdio://everything", "stdio://everything"),
        ("http://host:notaport/x", "http://host"),
    ],
)
def test_a_url_is_shown_without_credentials_path_or_query(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_credentials_inside_free_text_are_removed_from_every_url() -> None:
    text = "POST https://u:p%40ss@a.example/x failed; retried http://tok@b.example:81/y?z=1 then ok"
    assert strip_credentials(text) == (
        "POST https://a.example/x failed; retried http://b.example:81/y?z=1 then ok"
    )
    assert strip_credentials("user@example.com wrote: no URL here") == "user@example.com wrote: no URL here"
