"""The click classes every ``helio`` command is built from.

Listings (``helio --help``, ``helio tools --help``) show each command's whole first sentence
instead of click's 45-character cut (``print what it defines, or the first...``).
"""

from __future__ import annotations

import inspect

import click


def first_paragraph(help_text: str | None) -> str:
    """The first paragraph of a docstring, as one line."""
    if not help_text:
        return ""
    paragraph = inspect.cleandoc(help_text).split("\n\n", 1)[0]
    return " ".join(paragraph.split())


class HelioCommand(click.Command):
    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or first_paragraph(self.help)


class HelioGroup(click.Group):
    command_class = HelioCommand
    group_class = type  # subgroups are HelioGroups too

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or first_paragraph(self.help)
