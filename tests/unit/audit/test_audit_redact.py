import pytest

from helio_proxy.audit.redact import DEFAULT_PATTERNS, REDACTED, Redactor, luhn_valid


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "client_secret",
        "access_token",
        "api_key",
        "apiKey",
        "API-KEY",
        "api key",
        "Authorization",
        "set-cookie",
    ],
)
def test_values_under_secret_looking_keys_are_replaced(key: str) -> None:
    assert Redactor().scrub({key: "s3cr3t", "city": "Paris"}) == {key: REDACTED, "city": "Paris"}


def test_whole_objects_under_a_secret_key_are_replaced_and_nesting_is_walked() -> None:
    value = {"auth": {"password": {"a": 1}}, "items": [{"token": "t"}, "plain"]}
    assert Redactor().scrub(value) == {
        "auth": {"password": REDACTED},
        "items": [{"token": REDACTED}, "plain"],
    }


def test_scrubbing_never_modifies_its_input() -> None:
    original = {"api_key": "sk-live-1", "nested": {"password": "x"}}
    Redactor().scrub(original)
    assert original == {"api_key": "sk-live-1", "nested": {"password": "x"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("curl -H 'Authorization: Bearer abc.def'", f"curl -H 'Authorization: Bearer {REDACTED}'"),
        ("password=hunter2&user=bob", f"password={REDACTED}&user=bob"),
        ('{"api_key": "sk-live-9"}', f'{{"api_key": "{REDACTED}"}}'),
        ("tokens used: 12", "tokens used: 12"),
    ],
)
def test_secret_pairs_inside_strings_lose_their_value(text: str, expected: str) -> None:
    assert Redactor().scrub_text(text) == expected


@pytest.mark.parametrize(
    "card",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "5555555555554444"],
)
def test_card_numbers_in_text_are_masked_to_the_last_four_digits(card: str) -> None:
    masked = Redactor().scrub_text(f"pay with {card} today")
    assert masked == f"pay with [CARD ...{card[-4:]}] today"


def test_digit_runs_that_fail_luhn_or_look_like_timestamps_are_kept() -> None:
    redactor = Redactor()
    assert redactor.scrub_text("order 4111111111111112") == "order 4111111111111112"  # Luhn fails
    assert redactor.scrub_text("at 1700000000000000") == "at 1700000000000000"  # issuer digit 1
    assert redactor.scrub({"n": 1700000000000}) == {"n": 1700000000000}


def test_card_numbers_given_as_integers_are_masked() -> None:
    assert Redactor().scrub({"pan": 4111111111111111}) == {"pan": "[CARD ...1111]"}
    assert luhn_valid("4111111111111111")


def test_configured_patterns_add_to_the_defaults() -> None:
    redactor = Redactor([r"ssn|social[-_ ]?security"])
    assert redactor.patterns[: len(DEFAULT_PATTERNS)] == DEFAULT_PATTERNS
    assert redactor.scrub({"ssn": "123-45-6789", "password": "p", "name": "x"}) == {
        "ssn": REDACTED,
        "password": REDACTED,
        "name": "x",
    }
