import pytest

from helio_proxy.matching.regex_safety import UnsafeRegex, check_regex


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(?:a*)*b",
        r"(\w*,?)*",
        r"(a{1,3})+",
        r"(a+){2,9}",
        r"(.*a){12}",
        r"^(([a-z])+.)+[A-Z]([a-z])+$",
        r"(a|a)*",
        r"(a|ab)*c",
        r"(x|y?)+",
        r"(\wa|\dc)*$",
        r"(.|\s)*END",
    ],
)
def test_patterns_that_can_backtrack_catastrophically_are_rejected(pattern: str) -> None:
    with pytest.raises(UnsafeRegex):
        check_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^DROP\s+TABLE",
        r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$",
        r"(\d{1,3}\.){3}\d{1,3}",
        r"(ab|ac)*",
        r"(foo|bar)+baz",
        r"\d+\d+",
        r"a*+",
        r"(?>a+)+",
        r"(ab{2})+",
        r"(?i)password",
    ],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert check_regex(pattern).pattern == pattern


def test_a_pattern_that_does_not_compile_is_rejected_with_the_compiler_message() -> None:
    with pytest.raises(UnsafeRegex, match="invalid regular expression"):
        check_regex("(unclosed")
