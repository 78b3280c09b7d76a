"""What a stdio child inherits, and the check that its command can be started."""

from __future__ import annotations

import sys

from helio_proxy.transports.upstream.stdio import child_environment, command_problem


def test_helios_secrets_are_withheld_by_name_and_by_value() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HELIO_SDK_TOKEN": "tok",
        "MY_COPY": "dashboard-secret",
        "ANOTHER": "sdk-token",
        "EMPTY": "",
    }
    child = child_environment(environ, ["dashboard-secret", "sdk-token", None, ""])
    assert child == {"PATH": "/usr/bin", "EMPTY": ""}


def test_a_command_is_checked_on_the_childs_path() -> None:
    assert command_problem(sys.executable, {}) is None
    assert command_problem("sh", {"PATH": "/bin:/usr/bin"}) is None
    problem = command_problem("helio-no-such-command", {"PATH": "/bin"})
    assert problem is not None
    assert "not found" in problem
