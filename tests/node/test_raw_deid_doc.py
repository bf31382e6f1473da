"""The raw de-identification page shows exactly the allow-lists the code applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.raw_deid.doc import TABLES, tables

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "deidentification-raw.md"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_page_holds_the_table_the_code_applies(name: str) -> None:
    block = re.search(rf"<!-- table:{name} -->\n(.*?)<!-- /table:{name} -->", PAGE.read_text(), re.S)
    assert block is not None, f"no table:{name} block in {PAGE.name}"
    assert block.group(1) == tables()[name], "run: python -m node.raw_deid.doc docs/deidentification-raw.md"


def test_every_row_says_why() -> None:
    rows = [rule for rules in TABLES.values() for rule in rules]
    assert len(rows) > 150
    assert [rule.path for rule in rows if len(rule.reason) < 8] == []


def test_the_node_guide_links_the_page() -> None:
    assert "(deidentification-raw.md)" in (DOCS / "node.md").read_text()
