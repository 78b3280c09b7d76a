"""The docs and the ``helio`` command line cannot drift apart: every command the docs name exists,
and every page that shows a secret hash says how to make one."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from helio_proxy.cli import cli

ROOT = Path(__file__).resolve().parents[3]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("README.md")])
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?<![\w./-])helio ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
SHELL_FENCES = {"", "sh", "bash", "console", "shell", "text"}


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_of(text: str) -> list[str]:
    """Shell code blocks and inline code spans (Python, YAML and JSON blocks are left out)."""
    blocks = [body for lang, body in FENCE.findall(text) if lang in SHELL_FENCES]
    prose = FENCE.sub("", text)
    return blocks + SPAN.findall(prose)


def named_commands(text: str) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for code in code_of(text):
        for match in COMMAND.finditer(code):
            found.add(tuple(word for word in match.groups() if word))
    return found


def resolves(words: tuple[str, ...]) -> bool:
    command = cli.commands.get(words[0])
    if command is None:
        return False
    if isinstance(command, click.Group) and len(words) > 1:
        return words[1] in command.commands
    return True


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_helio_command_a_page_names_exists(page: Path) -> None:
    missing = sorted(" ".join(words) for words in named_commands(page.read_text()) if not resolves(words))
    assert missing == [], f"{_id(page)} names commands that do not exist"


def test_the_command_check_catches_a_command_that_does_not_exist() -> None:
    assert not resolves(("operator", "hash"))
    assert ("operator", "hash") in named_commands("run `helio operator hash` to make one")


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_page_that_shows_a_secret_or_token_hash_says_to_make_it_with_helio_secret(page: Path) -> None:
    text = page.read_text()
    if re.search(r"\b(secret|token)_hash\b", text):
        assert "helio secret" in text
