import pytest

from helio_proxy.matching.glob import GlobError, compile_glob


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("delete_*", "delete_user", True),
        ("delete_*", "delete_", True),
        ("delete_*", "undelete_user", False),
        ("*", "anything.with.dots", True),
        ("*", ".hidden", True),
        ("*_user", "delete_user", True),
        ("get_?", "get_a", True),
        ("get_?", "get_ab", False),
        ("[gs]et_*", "set_x", True),
        ("[gs]et_*", "net_x", False),
        ("[!gs]et_*", "net_x", True),
        ("[!gs]et_*", "get_x", False),
        ("tool_[a-c]", "tool_b", True),
        ("tool_[a-c]", "tool_d", False),
        ("{get,list}_*", "list_orders", True),
        ("{get,list}_*", "delete_orders", False),
        ("{a,b{c,d}}", "bd", True),
        ("{a,b{c,d}}", "b", False),
        ("github.delete_repo", "github.delete_repo", True),
        ("github.delete_repo", "githubxdelete_repo", False),
        ("github.*", "github.issues.create", True),
        ("fs/*", "fs/read", True),
        ("fs/*", "fs/a/b", False),
        ("fs/**", "fs/a/b", True),
        (r"weird\*name", "weird*name", True),
        (r"weird\*name", "weirdXname", False),
        ("send_email", "send_email", True),
        ("send_email", "send_emails", False),
    ],
)
def test_tool_globs_match_whole_names_with_picomatch_semantics(
    pattern: str, name: str, expected: bool
) -> None:
    assert compile_glob(pattern)(name) is expected


@pytest.mark.parametrize("pattern", ["", "run_{sql", "run_[sql", "trailing\\", "a}b", "only_{one}"])
def test_malformed_globs_are_rejected(pattern: str) -> None:
    with pytest.raises(GlobError):
        compile_glob(pattern)
