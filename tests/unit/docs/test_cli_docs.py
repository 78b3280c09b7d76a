"""The docs and the ``helio`` command line cannot drift apart: every command the docs name exists,
and every page that shows a secret hash says how to make one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

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
    if re.search(r"\b(secret|token)_hash\b|sha256:<hex>", text):
        assert "helio secret" in text


# docs/cli.md's command table against the real --help of every command.

CLI_MD = ROOT / "docs" / "cli.md"
HELP_OPTION = re.compile(r"^  (-[^\s,]+(?:, -[^\s,]+)*)(?: (\S+))?(?:\s{2,}|$)")
TOKEN = re.compile(r"\[|\]|[^\s\[\]]+")


def leaf_commands(
    group: click.Group = cli, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, (*prefix, name)))
        else:
            found[(*prefix, name)] = command
    return found


def real_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.stdout


def help_options(text: str) -> dict[tuple[str, ...], str | None]:
    """Every option of a --help text (its names) → its metavar (``None`` for a flag); -h/--help left out."""
    options: dict[tuple[str, ...], str | None] = {}
    for line in text.splitlines():
        match = HELP_OPTION.match(line)
        if match is not None and "--help" not in match.group(1):
            options[tuple(match.group(1).split(", "))] = match.group(2)
    return options


def by_name(options: dict[tuple[str, ...], str | None]) -> dict[str, str | None]:
    return {name: metavar for names, metavar in options.items() for name in names}


def help_arguments(text: str) -> set[str]:
    usage = text.splitlines()[0]
    rest = usage.split("[OPTIONS]", 1)[1] if "[OPTIONS]" in usage else ""
    return {word.strip("[].") for word in rest.split()}


def documented_synopses() -> list[str]:
    text = CLI_MD.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `helio ")]
    spans: list[str] = []
    for row in rows:
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        spans += [span.replace("\\|", "|") for span in SPAN.findall(first_cell) if span.startswith("helio ")]
    return spans


def command_of(synopsis: str) -> tuple[tuple[str, ...], list[str]]:
    words = synopsis.split()[1:]
    path: tuple[str, ...] = ()
    for word in words:
        if (*path, word) in leaf_commands() or any(
            p[: len(path) + 1] == (*path, word) for p in leaf_commands()
        ):
            path = (*path, word)
        else:
            break
    return path, TOKEN.findall(" ".join(words[len(path) :]))


def synopsis_options(tokens: list[str]) -> tuple[dict[str, str | None], set[str]]:
    """Options (→ metavar or ``None``) and positional words of a documented synopsis."""
    options: dict[str, str | None] = {}
    positional: set[str] = set()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token == "--":
            positional.update(t.strip(".") for t in tokens[index + 1 :] if t not in "[]")
            break
        if token.startswith("-"):
            takes_value = following is not None and following not in "[]" and not following.startswith("-")
            options[token] = following if takes_value else None
            index += 2 if takes_value else 1
            continue
        if token not in "[]":
            positional.add(token.strip("."))
        index += 1
    return options, positional


def test_docs_cli_md_has_a_row_for_every_command_and_names_only_real_ones() -> None:
    documented = {command_of(synopsis)[0] for synopsis in documented_synopses()}
    assert documented == set(leaf_commands())


@pytest.mark.parametrize("path", sorted(leaf_commands()), ids=" ".join)
def test_docs_cli_md_gives_each_command_exactly_the_options_and_metavars_of_its_help(
    path: tuple[str, ...],
) -> None:
    text = real_help(path)
    real = by_name(help_options(text))
    documented: dict[str, str | None] = {}
    positional: set[str] = set()
    for synopsis in documented_synopses():
        found, tokens = command_of(synopsis)
        if found == path:
            options, words = synopsis_options(tokens)
            documented.update(options)
            positional |= words
    for option, metavar in documented.items():
        assert option in real, (
            f"docs/cli.md gives `helio {' '.join(path)}` an option {option} its --help lacks"
        )
        assert metavar == real[option], f"{option}: docs/cli.md says {metavar}, --help says {real[option]}"
    for names in help_options(text):
        assert any(name in documented for name in names), (
            f"--help of `helio {' '.join(path)}` has {names}, docs/cli.md does not"
        )
    assert help_arguments(text) <= positional


def test_the_drift_check_catches_a_wrong_metavar_and_a_missing_option() -> None:
    options, _ = synopsis_options(TOKEN.findall("[-c FILE] [--public-key PEM]"))
    real = by_name(help_options(real_help(("audit", "verify"))))
    old_export, _ = synopsis_options(TOKEN.findall("[-c FILE] [-f csv|json] [--tool] [-o FILE]"))
    export = by_name(help_options(real_help(("export",))))
    assert options["--public-key"] != real["--public-key"]
    assert old_export["-f"] != export["-f"]  # -f took a value; it is a flag now
    assert old_export["--tool"] != export["--tool"]


def test_the_top_level_help_lists_every_command_with_its_whole_one_line_description() -> None:
    listing = " ".join(real_help(()).split("Commands:", 1)[1].split())
    for name, command in cli.commands.items():
        first = " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())
        assert f"{name} {first}" in listing, f"helio --help cuts the description of {name}"
    assert "..." not in listing
