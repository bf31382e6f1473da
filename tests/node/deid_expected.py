"""The node's de-identification rules, written out for the tests independently of ``node.deid_profile``.

The standard's rows come from ``node.deid_profile_table``, which ``test_deid_profile.py`` proves equal to the
pinned source. Everything the node does differently is written here by hand, so that a change of a deviation in
the production code fails the tests until this file (and docs/deidentification-dicom.md) says the same.
"""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag

from node.deid_profile_table import ROWS

#: The standard's table: tag -> Basic Profile action.
STANDARD: dict[int, str] = {tag: action for tag, action, _, _ in ROWS}

#: Per attribute: the code the node applies where it differs from the standard's row or the table has no row.
DEVIATION_CODES: dict[int, str] = {
    0x00001001: "X",  # RequestedSOPInstanceUID: command group removed
    0x00100010: "Z",  # PatientName: the pseudonym at the top level
    0x00100020: "Z/D",  # PatientID: the pseudonym at the top level
    0x00080106: "K",  # ContextGroupVersion: public version stamp
    0x0040DB06: "K",  # TemplateVersion: public version stamp
    0x00080051: "X", 0x0008010D: "U", 0x00089123: "U", 0x00100026: "X", 0x00100027: "X", 0x00100033: "X",
    0x00100034: "X", 0x00100035: "X", 0x00203404: "X", 0x00287FE0: "X", 0x00081167: "U", 0x00083012: "U",
    0x0018991E: "U", 0x00200242: "U", 0x00209312: "U", 0x00209313: "U", 0x00280304: "U", 0x00440102: "U",
    0x00440108: "U", 0x00687004: "U", 0x0070031B: "U", 0x00701209: "U", 0x300A0675: "U", 0x0040E011: "X",
    0x0040E030: "X", 0x0040E031: "X", 0x4FFE0001: "X",
}  # fmt: skip

PSEUDONYM_TAGS = frozenset({0x00100010, 0x00100020})
#: Birth date and time stay under the basic profile, whatever the date option does to other dates.
BIRTH_DATE_TIME = frozenset({0x00100030, 0x00100032})
FREE_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "UN"})
#: Free-text attributes outside the table that the node keeps.
FREE_TEXT_KEPT = frozenset({
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "RescaleType", "WindowCenterWidthExplanation",
    "LUTExplanation", "LUTLabel", "ConvolutionKernel", "FilterType", "SequenceName", "PulseSequenceName",
    "ImagedNucleus", "ReceiveCoilName", "TransmitCoilName", "PositionReferenceIndicator",
    "DimensionDescriptionLabel", "StackID", "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion",
    "CodeMeaning", "LongCodeValue", "URNCodeValue", "DeidentificationMethod",
})  # fmt: skip


def expected_code(tag: int, vr: str) -> str:
    """The table code the node applies to a public attribute outside the command group and repeating groups."""
    if tag in DEVIATION_CODES:
        return DEVIATION_CODES[tag]
    if tag in STANDARD:
        return STANDARD[tag]
    if vr in FREE_TEXT_VRS and keyword_for_tag(tag) not in FREE_TEXT_KEPT:
        return "X/Z/D"
    return "K"
