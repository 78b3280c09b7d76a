"""Generate ``docs/cli-reference.md`` from the click commands themselves.

``python -m helio_proxy.cli.docgen --write docs/cli-reference.md`` rewrites it; ``--check FILE``
exits 1 when the file differs from what the commands say (the ``docs`` nox session runs it, and a
test does too). Each command's section is exactly its ``--help`` output (with the contexts
``helio ... --help`` builds), so the page cannot drift from the code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from helio_proxy import docgen

HEADER = """\
# CLI reference

Every command's `--help`, generated from the commands by
`python -m helio_proxy.cli.docgen --write docs/cli-reference.md`; a test fails when this page and
the commands disagree. The overview, exit codes and examples are in [The `helio` command](cli.md).
"""

HELP_WIDTH = 80
"""The terminal width the page is rendered for (fixed, so it does not depend on who runs this); on
any terminal at least this wide, ``--help`` prints exactly what the page shows (click caps help at
80 columns)."""


def contexts(
    command: click.Command, name: str = "helio", parent: click.Context | None = None
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every visible command under ``command`` with the context ``helio ... --help`` builds for it
    (parents chained, so inherited settings such as ``-h`` apply)."""
    context = command.make_context(
        name,
        [],
        parent=parent,
        resilient_parsing=True,
        terminal_width=HELP_WIDTH,
    )
    yield command, context
    if isinstance(command, click.Group):
        for sub in command.list_commands(context):
            found = command.get_command(context, sub)
            if found is not None and not found.hidden:
                yield from contexts(found, sub, context)


def _anchor(path: str) -> str:
    """The heading id MkDocs (Python-Markdown ``toc``) gives ``## `helio a b` ``."""
    return path.replace(" ", "-")


def _section(command: click.Command, context: click.Context) -> str:
    path = context.command_path
    lines = [f"## `{path}`", "", "```text", command.get_help(context), "```", ""]
    if isinstance(command, click.Group):
        names = command.list_commands(context)
        links = ", ".join(f"[`{path} {name}`](#{_anchor(f'{path} {name}')})" for name in names)
        lines += [f"Subcommands: {links}", ""]
    return "\n".join(lines)


def render(root: click.Command | None = None) -> str:
    """The whole page for ``root`` (default: the ``helio`` command)."""
    if root is None:
        from helio_proxy.cli import cli

        root = cli
    sections = [_section(command, context) for command, context in contexts(root)]
    return HEADER + "\n" + "\n".join(sections).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    return docgen.main(render, "helio_proxy.cli.docgen", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
