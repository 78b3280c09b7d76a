"""What a stdio child inherits, and the check that its command can be started."""

from __future__ import annotations

import sys

from helio_proxy.transports.upstream.stdio import (
    DEFAULT_INHERITED_ENV,
    Withheld,
    child_environment,
    command_problem,
)

ENVIRON = {
    "PATH": "/usr/bin",
    "HOME": "/home/op",
    "LC_ALL": "C.UTF-8",
    "HELIO_SDK_TOKEN": "tok",
    "HELIO_WEBHOOK_SECRET": "hook",
    "SLACK_SIGNING_SECRET": "signing",
    "MY_COPY": "dashboard-secret",
    "ANOTHER": "sdk-token",
    "GITHUB_TOKEN": "the-servers-own-key",
    "EMPTY": "",
}
WITHHELD = Withheld(
    names=frozenset({"SLACK_SIGNING_SECRET", "HELIO_WEBHOOK_SECRET"}),
    values=frozenset({"dashboard-secret", "sdk-token"}),
)


def test_under_wrap_a_child_inherits_everything_but_helio_variables_referenced_ones_and_secret_values() -> (
    None
):
    child = child_environment(ENVIRON, WITHHELD, inherit=True)
    assert child == {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LC_ALL": "C.UTF-8",
        "GITHUB_TOKEN": "the-servers-own-key",
        "EMPTY": "",
    }


def test_under_start_a_child_inherits_only_the_default_set_plus_upstream_env() -> None:
    child = child_environment(ENVIRON, WITHHELD, inherit=False, extra={"API_KEY": "given", "HOME": "/srv"})
    assert child == {"PATH": "/usr/bin", "HOME": "/srv", "LC_ALL": "C.UTF-8", "API_KEY": "given"}
    assert {"PATH", "HOME", "USER", "LANG", "TERM", "TMPDIR", "SHELL"} <= DEFAULT_INHERITED_ENV


def test_a_command_is_checked_on_the_childs_path() -> None:
    assert command_problem(sys.executable, {}) is None
    assert command_problem("sh", {"PATH": "/bin:/usr/bin"}) is None
    problem = command_problem("helio-no-such-command", {"PATH": "/bin"})
    assert problem is not None
    assert "not found" in problem
