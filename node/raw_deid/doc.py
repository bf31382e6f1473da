"""Print the allow-lists as the Markdown tables of ``docs/deidentification-raw.md``.

``python -m node.raw_deid.doc docs/deidentification-raw.md`` rewrites the tables between their
``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` markers from the code; a test checks that the
page holds exactly what this module prints.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from node.raw_deid.ismrmrd_file import ACQUISITION_RULES, FILE_RULES
from node.raw_deid.ismrmrd_header import HEADER_RULES
from node.raw_deid.provenance import PROVENANCE_RULES
from node.raw_deid.rules import markdown_table
from node.raw_deid.sinogram import SINOGRAM_RULES

__all__ = ["TABLES", "tables", "update"]

TABLES = {
    "sinogram": SINOGRAM_RULES.rules,
    "provenance": PROVENANCE_RULES,
    "ismrmrd-file": FILE_RULES.rules,
    "ismrmrd-header": HEADER_RULES.rules,
    "ismrmrd-acquisition": ACQUISITION_RULES.rules,
}


def tables() -> dict[str, str]:
    """Return each allow-list as a Markdown table, by the name its markers use."""
    return {name: markdown_table(rules) for name, rules in TABLES.items()}


def update(page: Path) -> None:
    """Rewrite the marked tables of ``page`` from the code.

    Raises:
        ValueError: a table's markers are missing from the page.
    """
    text = page.read_text(encoding="utf-8")
    for name, table in tables().items():
        block = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table:{name} -->)", re.S)
        if not block.search(text):
            raise ValueError(f"{page} has no <!-- table:{name} --> ... <!-- /table:{name} --> block; add one")
        text = block.sub(_filled(table), text)
    page.write_text(text, encoding="utf-8")


def _filled(table: str) -> Callable[[re.Match[str]], str]:
    def fill(match: re.Match[str]) -> str:
        return match.group(1) + table + match.group(2)

    return fill


if __name__ == "__main__":
    update(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/deidentification-raw.md"))
