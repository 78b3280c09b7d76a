"""The docs site (mkdocs.yml): every page under docs/ is reachable from the navigation.

``mkdocs build --strict`` in the ``docs`` nox session checks this too (with links and anchors);
this test says it without building the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _pages(entries: list[Any]) -> list[str]:
    found: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += _pages(value) if isinstance(value, list) else [value]
    return found


def test_every_docs_page_is_in_the_site_navigation_once() -> None:
    site = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _pages(site["nav"])
    assert len(pages) == len(set(pages))
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert site["theme"]["name"] == "material"
    assert site["strict"] is True
