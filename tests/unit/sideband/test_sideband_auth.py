"""The per-boot sideband token and the bearer check."""

from __future__ import annotations

from helio_proxy.sideband import TOKEN_ENV_VAR, bearer_matches, resolve_token


def test_a_token_is_generated_when_none_is_set_and_exported_for_children() -> None:
    environ: dict[str, str] = {}
    token = resolve_token(environ)
    assert not token.from_env
    assert len(token.value) == 64
    int(token.value, 16)
    assert environ[TOKEN_ENV_VAR] == token.value


def test_each_boot_gets_a_different_token() -> None:
    assert resolve_token({}).value != resolve_token({}).value


def test_a_token_from_the_environment_is_used_as_is() -> None:
    token = resolve_token({TOKEN_ENV_VAR: "operator-chosen"})
    assert token.from_env
    assert token.value == "operator-chosen"


def test_an_empty_environment_token_counts_as_unset() -> None:
    """Fail closed: an empty variable never leaves the sideband open."""
    token = resolve_token({TOKEN_ENV_VAR: ""})
    assert not token.from_env
    assert token.value


def test_the_token_never_shows_in_repr() -> None:
    assert "secret-value" not in repr(resolve_token({TOKEN_ENV_VAR: "secret-value"}))


def test_bearer_matching() -> None:
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("BEARER  abc ", "abc")
    assert not bearer_matches("Bearer abcd", "abc")
    assert not bearer_matches("Token abc", "abc")
    assert not bearer_matches(None, "abc")
    assert not bearer_matches("abc", "abc")
