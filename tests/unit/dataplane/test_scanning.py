"""Content scanning: built-in detectors, the Luhn check, redact/block/flag and modes."""

from __future__ import annotations

import pytest

from helio_proxy.config.data_plane import ScanRule
from helio_proxy.dataplane.scanning import compile_rule, luhn_ok, scan


def rule(action: str = "redact", **keys: object) -> ScanRule:
    return ScanRule.model_validate({"name": "r", "action": action, **keys})


@pytest.mark.parametrize(
    ("detector", "text"),
    [
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_secret_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("github_token", "ghp_" + "a" * 36),
        ("slack_token", "xoxb-1234567890-abcdefghij"),
        ("stripe_key", "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"),
        ("google_api_key", "AIza" + "S" * 35),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
        ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"),
        ("card_number", "4111-1111-1111-1111"),
        ("email", "jane.doe@example.com"),
        ("phone", "+44 20 7946 0958"),
    ],
)
def test_each_builtin_detector_finds_its_kind_and_redacts_it(detector: str, text: str) -> None:
    compiled = compile_rule(rule(detect=[detector]), "enforce")
    assert compiled is not None
    outcome = scan({"note": f"before {text} after"}, [compiled], "results")
    assert [f.kind for f in outcome.findings] == [detector]
    assert outcome.value == {"note": f"before [REDACTED:{detector}] after"}


def test_a_card_number_must_pass_the_luhn_check() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    compiled = compile_rule(rule(detect=["card_number"]), "enforce")
    assert compiled is not None
    outcome = scan(["order 4111111111111112", "ts 1733160000000"], [compiled], "results")
    assert outcome.findings == []
    assert outcome.changed is False


def test_flag_records_without_changing_and_block_is_the_strongest_action() -> None:
    flag = compile_rule(rule("flag", detect=["email"]), "enforce")
    block = compile_rule(
        rule("block", detect=["aws_access_key"], patterns={"employee_id": r"EMP-\d{6}"}), "enforce"
    )
    assert flag is not None
    assert block is not None
    value = {"a": ["mail a@b.io", "EMP-123456"], "n": 3}
    outcome = scan(value, [flag, block], "arguments", "$.arguments")
    assert outcome.value == value
    assert {(f.kind, f.path, f.action) for f in outcome.findings} == {
        ("email", "$.arguments.a[0]", "flag"),
        ("employee_id", "$.arguments.a[1]", "block"),
    }
    assert outcome.action == "block"


def test_warn_downgrades_a_rule_to_flag_and_off_disables_it() -> None:
    warned = compile_rule(rule("block", detect=["email"]), "warn")
    assert warned is not None
    assert warned.action == "flag"
    assert compile_rule(rule("block", detect=["email"]), "off") is None


def test_a_rule_applies_only_to_its_scope_tools_and_upstreams() -> None:
    compiled = compile_rule(
        rule(detect=["email"], scope=["results"], tools=["crm_*"], upstreams=["crm"]), "enforce"
    )
    assert compiled is not None
    assert compiled.applies("crm_lookup", "crm", "results")
    assert not compiled.applies("crm_lookup", "crm", "arguments")
    assert not compiled.applies("billing", "crm", "results")
    assert not compiled.applies("crm_lookup", "other", "results")
