"""The de-identification engine does to each attribute what the standard's row says, on a real instance.

A synthetic marker is planted in every attribute of the typed rows (``tests/node/deid_basic_profile.py``) and in the
attributes the node documents deviations for, in pydicom's public ``CT_small.dcm``; the engine runs; each attribute
is then checked against the action the test derives from the standard's code and the rules of
docs/deidentification-dicom.md: removed (X), emptied (Z and X/Z), replaced by a dummy without the marker (D and the
compound codes ending in D), replaced by the UID the docs define (U: "2.25." and the first 128 bits of
HMAC-SHA256(secret, uid), computed here), kept (K). Dates (DA, DT) are shifted by the patient's offset and times of day
(TM) kept, except the birth date and time, as the docs' rule deviations say.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from datetime import date, datetime, timedelta
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from node.deid import PatientContext, UidMapper, deidentify
from tests.node.deid_basic_profile import BASIC_PROFILE, DOCUMENTED_DEVIATIONS, EDITION_ROWS

SECRET = b"test-secret-not-for-production-0011"
PSEUDONYM = "MTP-TEST000011"
SHIFT_DAYS = 17
MARK = "ZQX"  # every planted text ends with it; nothing of the node's own writes contains it
PLANTED_DATE = date(2020, 3, 15)
PLANTED_TIME = "101500"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BIRTH = {0x00100030, 0x00100032}  # PatientBirthDate, PatientBirthTime: not under the date option
PSEUDONYM_TAGS = {0x00100010, 0x00100020}  # PatientName, PatientID

ROWS = [*BASIC_PROFILE, *EDITION_ROWS]
_TYPED = {r[1] for r in ROWS}
ROWS += [(kw, tag, standard) for kw, (tag, standard, _) in DOCUMENTED_DEVIATIONS.items() if tag not in _TYPED]
OURS = {tag: ours for tag, _, ours in DOCUMENTED_DEVIATIONS.values()}


def _marker(n: int, vr: str) -> Any:
    """A synthetic value for row ``n`` valid for ``vr``, carrying the marker where the VR can hold text."""
    if vr == "CS":
        return f"MARK_{n:04d}_{MARK}"
    if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE"):
        return f"MARK-{n:04d}-{MARK}"
    if vr in ("OB", "OW", "UN"):
        return f"MARK-{n:04d}-{MARK}".encode("ascii") + b"\x00"
    if vr == "UI":
        return f"1.2.999.999.7.{n}"
    if vr == "DA":
        return PLANTED_DATE.strftime("%Y%m%d")
    if vr == "DT":
        return PLANTED_DATE.strftime("%Y%m%d") + PLANTED_TIME
    if vr == "TM":
        return PLANTED_TIME
    if vr == "AS":
        return "042Y"
    if vr == "DS":
        return "71.5"
    if vr in ("US", "UL"):
        return 4
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = f"1.2.999.999.8.{n}"
        item.PatientComments = f"MARK-{n:04d}-{MARK}"
        return Sequence([item])
    raise AssertionError(f"no planted value for VR {vr}")


def _mapped(uid: str) -> str:
    """The replacement UID as docs and UidMapper's contract define it, computed independently."""
    digest = hmac.new(SECRET, uid.encode("utf-8"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


@pytest.fixture(scope="module")
def planted_and_cleaned() -> tuple[Dataset, Dataset]:
    """CT_small.dcm with every row's attribute planted, and its de-identified copy (written and read back)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for n, (_, tag, _) in enumerate(ROWS):
        vr = dictionary_VR(tag)
        ds.add_new(tag, vr, _marker(n, vr))
    result = deidentify(ds, PatientContext(PSEUDONYM, SHIFT_DAYS), UidMapper(SECRET))
    buffer = io.BytesIO()
    result.dataset.save_as(buffer)
    buffer.seek(0)
    return ds, pydicom.dcmread(buffer)


def _expected(tag: int, vr: str, code: str) -> str:
    """The outcome the docs give for an attribute: removed, empty, dummy, mapped, kept, shifted or pseudonym."""
    code = OURS.get(tag, code)
    if tag in PSEUDONYM_TAGS:
        return "pseudonym"
    if vr == "TM" and tag not in BIRTH:
        return "kept"
    if vr in ("DA", "DT") and tag not in BIRTH and code != "K":
        return "shifted"
    if code in ("X", "K", "U"):
        return {"X": "removed", "K": "kept", "U": "mapped"}[code]
    if code in ("Z", "X/Z"):
        return "empty"
    if code == "X/Z/U*":
        return "references mapped" if vr == "SQ" else "empty"
    # D and the compound codes ending in D, on a non-empty value: a dummy (a UID is given a mapped one; a sequence
    # takes Z where the code allows it, else one empty item).
    if vr == "UI":
        return "mapped"
    if vr == "SQ":
        return "empty" if "Z" in code else "dummy item"
    return "dummy"


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize(("keyword", "tag", "code"), [pytest.param(*r, id=f"{r[0]}-{r[1]:08X}") for r in ROWS])
def test_engine_applies_the_standard_action(
    planted_and_cleaned: tuple[Dataset, Dataset], keyword: str, tag: int, code: str
) -> None:
    original, cleaned = planted_and_cleaned
    vr = dictionary_VR(tag)
    planted = original[tag].value
    outcome = _expected(tag, vr, code)
    if outcome == "removed":
        assert tag not in cleaned, f"{keyword} should be removed ({code}), holds {cleaned[tag].value!r}"
        return
    assert tag in cleaned, f"{keyword} is missing; the docs say {outcome} ({code})"
    value = cleaned[tag].value
    if outcome == "kept":
        assert value == planted
    elif outcome == "pseudonym":
        assert str(value) == PSEUDONYM
    elif outcome == "empty":
        assert value in ("", None, b"") or (vr == "SQ" and len(value) == 0), f"{keyword} holds {value!r}"
    elif outcome == "shifted":
        moved = PLANTED_DATE + timedelta(days=SHIFT_DAYS)
        expected = moved.strftime("%Y%m%d") + (PLANTED_TIME if vr == "DT" else "")
        assert str(value) == expected
        assert datetime.strptime(str(value)[:8], "%Y%m%d").date() - PLANTED_DATE == timedelta(days=SHIFT_DAYS)
    elif outcome == "mapped":
        assert str(value) == _mapped(str(planted))
    elif outcome == "references mapped":
        (item,) = value
        assert item.ReferencedSOPInstanceUID == _mapped(str(planted[0].ReferencedSOPInstanceUID))
        assert item.ReferencedSOPClassUID == CT_IMAGE_STORAGE  # a UID of the standard: kept
        assert "PatientComments" not in item  # X inside the item too
    elif outcome == "dummy item":
        assert len(value) >= 1, f"{keyword} should hold a dummy item ({code}), is empty"
        assert all(MARK not in repr(item) for item in value), f"{keyword} holds {value!r}"
    else:
        assert value not in ("", None, b""), f"{keyword} should hold a dummy ({code}), is empty"
        assert MARK not in _text(value), f"{keyword} still holds {value!r}"
        assert value != planted


def test_no_planted_text_reaches_the_written_file(planted_and_cleaned: tuple[Dataset, Dataset]) -> None:
    _, cleaned = planted_and_cleaned
    buffer = io.BytesIO()
    cleaned.save_as(buffer)
    assert MARK.encode() not in buffer.getvalue()
    assert MARK.encode("utf-16-le") not in buffer.getvalue()


def test_planted_rows_cover_the_typed_table(planted_and_cleaned: tuple[Dataset, Dataset]) -> None:
    original, _ = planted_and_cleaned
    assert len(ROWS) >= 60
    assert [kw for kw, tag, _ in ROWS if tag not in original] == []
    # The patient comments row is among them, with a marker the engine must remove.
    assert MARK in str(original[0x00104000].value)
