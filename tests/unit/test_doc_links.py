"""Every page the docs, the README and the code (docstrings /openapi.json publishes) send a
reader to exists: a `docs/NAME.md` they name, and a relative Markdown link's target."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted((ROOT / "src" / "gradesync").rglob("*.py"))


def _named_docs(path: Path) -> set[str]:
    return set(re.findall(r"\bdocs/[A-Za-z0-9_.-]+\.md\b", path.read_text(encoding="utf-8")))


def test_every_docs_page_named_exists() -> None:
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in [*PAGES, *SOURCES]
        for name in _named_docs(path)
        if not (ROOT / name).is_file()
    }
    assert not missing, sorted(missing)


def test_every_relative_markdown_link_leads_to_a_file() -> None:
    missing = set()
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            if not (page.parent / target).exists():
                missing.add(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, sorted(missing)
