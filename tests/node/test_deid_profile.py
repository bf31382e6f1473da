"""The profile's data: the generated standard table, the node's deviations, and the docs that show them.

The expected actions come from the standard, typed in (``tests/node/deid_basic_profile.py``), and from the docs'
deviation tables, never from ``node.deid_profile_table``: a row changed there must fail here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag

from node import deid_profile_build as build
from node import deid_profile_table as table
from node.deid_profile import (
    BINARY_KEPT,
    DEVIATIONS,
    FREE_TEXT_KEPT,
    FREE_TEXT_VRS,
    REMOVED_REPEATING_GROUPS,
    RULE_DEVIATIONS,
    RULES_BY_TAG,
    STANDARD_RULES,
)
from tests.node.deid_basic_profile import BASIC_PROFILE, DOCUMENTED_DEVIATIONS, EDITION_ROWS
from tests.node.deid_expected import DEVIATION_CODES
from tests.node.deid_expected import FREE_TEXT_KEPT as EXPECTED_KEPT
from tests.node.deid_expected import FREE_TEXT_VRS as EXPECTED_VRS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "deidentification-dicom.md"


# --- the generated table -----------------------------------------------------------------------------------


def test_committed_table_equals_a_fresh_generation_from_the_pinned_source() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node.deid_profile_build", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.strip()) == (
        0,
        "deid_profile_table.py up to date (PS3.15 2026c, dicom-anonymizer 2.1.0)",
    ), proc.stderr


def test_table_records_its_edition_and_source() -> None:
    assert (table.EDITION, table.SOURCE) == ("2026c", "dicom-anonymizer==2.1.0")
    assert table.SOURCE_FILE.endswith("dicomfields_2026c.py")
    assert re.fullmatch(r"[0-9a-f]{64}", table.SOURCE_SHA256)
    assert "Copyright 2020, Kitware Europe" in (table.__doc__ or "")


def test_table_has_every_row_once_with_a_known_action_and_the_dictionary_keyword() -> None:
    tags = [row[0] for row in table.ROWS]
    assert len(tags) == len(set(tags)) == 652
    assert {row[1] for row in table.ROWS} == {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    assert [hex(t) for t, _, keyword, _ in table.ROWS if keyword and keyword != keyword_for_tag(t)] == []
    # Attributes newer than pydicom's dictionary keep the standard's name.
    assert len([name for _, _, keyword, name in table.ROWS if not keyword and name]) == 25
    assert [r.tag for r in STANDARD_RULES] == tags


# Rows of the 2026c edition that the hand-written table of the past missed or had wrong (issue #9).
ISSUE_9_ROWS = (
    ("PatientID", 0x00100020, "Z/D"),
    ("ContentSequence", 0x0040A730, "D"),
    ("VerifyingOrganization", 0x0040A027, "D"),
    ("DigitalSignatureUID", 0x04000100, "U"),
    ("ClinicalTrialSubjectID", 0x00120040, "D"),
    ("ClinicalTrialSponsorName", 0x00120010, "D"),
    ("DeviceLabel", 0x3010002D, "D"),
    ("EncapsulatedDocument", 0x00420011, "D"),
    ("CertificateOfSigner", 0x04000115, "D"),
    ("NetworkID", 0x00081000, "X"),
    ("PatientName", 0x00100010, "Z"),
    ("ReferencedImageSequence", 0x00081140, "X/Z/U*"),
)
TYPED_ROWS = {row[1]: row for row in (*BASIC_PROFILE, *EDITION_ROWS, *ISSUE_9_ROWS)}
ROW_PARAMS = [pytest.param(*row, id=f"{row[0]}-{row[1]:08X}") for row in TYPED_ROWS.values()]
DEVIATED = {tag: (standard, ours) for tag, standard, ours in DOCUMENTED_DEVIATIONS.values()}


def test_typed_rows_are_many_and_name_the_dictionary_keyword() -> None:
    assert len(BASIC_PROFILE) >= 60
    assert [kw for kw, tag, _ in TYPED_ROWS.values() if keyword_for_tag(tag) != kw] == []


@pytest.mark.parametrize(("keyword", "tag", "action"), ROW_PARAMS)
def test_table_assigns_the_standard_action(keyword: str, tag: int, action: str) -> None:
    generated = {row_tag: row_action for row_tag, row_action, _, _ in table.ROWS}
    assert generated.get(tag) == action, f"{keyword} ({tag:08X}): the generated table says {generated.get(tag)!r}"


@pytest.mark.parametrize(("keyword", "tag", "action"), ROW_PARAMS)
def test_node_applies_the_standard_action_or_the_documented_deviation(keyword: str, tag: int, action: str) -> None:
    standard, ours = DEVIATED.get(tag, (action, action))
    assert standard == action  # the docs quote the standard's code for the row
    assert RULES_BY_TAG[tag].action == ours, f"{keyword} ({tag:08X}) gets {RULES_BY_TAG[tag].action!r}"


def test_patient_comments_are_removed() -> None:
    assert RULES_BY_TAG[0x00104000].action == "X"
    assert RULES_BY_TAG[0x00104000].keyword == "PatientComments"


def test_build_refuses_another_release_of_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "SOURCE_VERSION", "9.9.9")
    with pytest.raises(build.ProfileBuildError, match=r"dicom-anonymizer 2\.1\.0 is installed, the table is pinned"):
        build.read_source()


def test_build_refuses_a_source_whose_layout_changed() -> None:
    text, _ = build.read_source()
    with pytest.raises(build.ProfileBuildError, match="has no list X_Z_U_STAR_TAGS"):
        build.parse_rows(text.replace("X_Z_U_STAR_TAGS = [", "OTHER_TAGS = ["))
    unnamed = re.sub(r"\(0x0010, 0x0010\),\s*#[^\n]*", "(0x0010, 0x0010),", text)
    with pytest.raises(build.ProfileBuildError, match=r"expected \(group, element\).*got '\(16, 16\)'"):
        build.parse_rows(unnamed)


def test_build_refuses_a_tag_listed_under_two_actions() -> None:
    text, _ = build.read_source()
    doubled = text.replace("D_TAGS = [\n", "D_TAGS = [\n    (0x0010, 0x0010),  # Patient's Name\n", 1)
    with pytest.raises(build.ProfileBuildError, match="lists a tag under two actions"):
        build.parse_rows(doubled)


# --- the node's deviations ---------------------------------------------------------------------------------


def test_deviations_are_exactly_the_written_out_ones() -> None:
    assert {tag: dev.action for tag, dev in DEVIATIONS.items()} == DEVIATION_CODES
    # The standard's code as the docs quote it; "" where the standard's table has no row.
    assert {tag: dev.standard for tag, dev in DEVIATIONS.items()} == {
        t: DEVIATED.get(t, ("", ""))[0] for t in DEVIATION_CODES
    }
    assert {t: ours for t, (_, ours) in DEVIATED.items()} == {t: DEVIATION_CODES[t] for t in DEVIATED}
    assert [hex(t) for t, dev in DEVIATIONS.items() if dev.keyword != keyword_for_tag(t)] == []
    assert all(dev.reason and dev.ours for dev in DEVIATIONS.values())


def test_rules_cover_the_table_rows_and_the_deviations() -> None:
    # Which attributes have a rule (structure); what each rule says is checked against the typed rows above.
    assert set(RULES_BY_TAG) == {tag for tag, *_ in table.ROWS} | set(DEVIATION_CODES)
    assert {tag: RULES_BY_TAG[tag].action for tag in DEVIATION_CODES} == DEVIATION_CODES


def test_free_text_rule_is_the_written_out_one() -> None:
    assert FREE_TEXT_VRS == EXPECTED_VRS
    assert {keyword for keyword, _ in FREE_TEXT_KEPT.values()} == EXPECTED_KEPT
    assert [hex(t) for t, (keyword, _) in FREE_TEXT_KEPT.items() if keyword != keyword_for_tag(t)] == []
    # The allow-list only covers attributes the table does not list: it cannot overrule the standard.
    assert [hex(t) for t in FREE_TEXT_KEPT if t in RULES_BY_TAG] == []


def test_repeating_groups_cover_the_table_masked_rows() -> None:
    masked = {(group, mask) for group, _, mask, _, _, _ in table.MASKED_ROWS}
    assert masked == {(group, 0xFF00) for group in REMOVED_REPEATING_GROUPS}
    assert all(action == "X" for *_, action, _ in table.MASKED_ROWS)


# --- the docs ----------------------------------------------------------------------------------------------


def _doc_table(heading: str) -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # header and rule
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def _tag(text: str) -> int:
    group, element = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", text).groups()  # type: ignore[union-attr]
    return int(group + element, 16)


def test_docs_list_every_deviation_per_attribute() -> None:
    documented = {
        _tag(tag): (keyword, "" if standard == "—" else standard, ours, reason)
        for keyword, tag, standard, ours, reason in _doc_table("### Deviations per attribute")
    }
    in_code = {t: (d.keyword, d.standard, f"{d.action}: {d.ours}", d.reason) for t, d in DEVIATIONS.items()}
    assert documented == in_code


def test_docs_list_every_deviation_by_rule() -> None:
    documented = [tuple(row) for row in _doc_table("### Deviations by rule")]
    assert documented == [(r.scope, r.standard, r.ours, r.reason) for r in RULE_DEVIATIONS]


def test_docs_list_the_binary_allow_list() -> None:
    documented = {_tag(tag): (keyword, why) for keyword, tag, why in _doc_table("### Binary attributes kept")}
    assert documented == dict(BINARY_KEPT)


def test_docs_list_the_free_text_allow_list() -> None:
    documented = {_tag(tag): (keyword, why) for keyword, tag, why in _doc_table("Kept as they are")}
    assert documented == dict(FREE_TEXT_KEPT)
