"""Every link in README.md and docs/ resolves inside the repository, anchors included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
# [text](target) and ![alt](target); a target ends at whitespace (an optional "title" follows) or ")".
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str, inline_code: bool = False) -> str:
    """The page without its fenced code blocks, and without its inline code unless ``inline_code``
    (links in code are examples, not links; headings keep their code words in their anchors)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line if inline_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def _links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text(encoding="utf-8")))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page`` (lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text(encoding="utf-8"), inline_code=True).splitlines():
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).replace("`", "").lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def test_the_anchor_rules_match_githubs() -> None:
    page = REPO / "docs" / "federated.md"
    assert "launching-a-study-with-deploy" in anchors(page)  # "## Launching a study with deploy"


def broken_links(page: Path, repo: Path) -> list[str]:
    """What is wrong with the links of ``page`` in repository ``repo`` (empty: nothing)."""
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            if page == repo / "README.md":
                broken.append(f"{target}: the README links only to files in the repository")
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(repo):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: {resolved.name} has no heading with anchor #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken_links(page, REPO) == []


def test_the_pages_have_links_to_check() -> None:
    # The pattern must find links at all, or every page passes by finding none.
    assert len(_links(REPO / "README.md")) >= 5
    assert sum(len(_links(p)) for p in PAGES) >= 30


def test_each_kind_of_broken_link_is_found(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "b.md").write_text("# Title\n\n## Two words `code`\n")
    (repo / "README.md").write_text(
        "[ok](docs/b.md) [ok](docs/b.md#two-words-code) [gone](docs/c.md) [anchor](docs/b.md#three)\n"
        "![out](../shared/DESIGN.md) [web](https://example.org/) `[code](not/checked.md)`\n"
        "```\n[fenced](not/checked.md)\n```\n")
    assert broken_links(repo / "README.md", repo) == [
        "docs/c.md: no such file",
        "docs/b.md#three: b.md has no heading with anchor #three",
        "../shared/DESIGN.md: outside the repository",
        "https://example.org/: the README links only to files in the repository",
    ]
    (repo / "docs" / "a.md").write_text("# Title\n[web](https://example.org/) [self](#title) [none](#nothing)\n")
    assert broken_links(repo / "docs" / "a.md", repo) == ["#nothing: a.md has no heading with anchor #nothing"]
