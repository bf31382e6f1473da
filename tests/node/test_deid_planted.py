"""Every attribute of the standard's Table E.1-1, planted in a real CT file and ingested by a real node.

Each attribute of the table (``node.deid_profile_table``, which ``test_deid_profile.py`` proves equal to the
standard's table as dicom-anonymizer 2.1.0 ships it) gets a marker value of its own, suited to its VR; sequences get
an item holding a marker text and a marker UID. The file goes through ``Ingestor`` on a node of the test chain, and
the stored file is searched, as bytes (plain and UTF-16), for every marker. A marker may only survive where the
standard's table or a deviation written out below allows it; the answers do not come from the production code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from sqlalchemy import select

from node.catalog import Record
from node.deid_profile_table import MASKED_ROWS, ROWS
from node.ingest import Ingestor
from node.vault import SHIFT_RANGE
from tests.node.deid_expected import BIRTH_DATE_TIME, DEVIATION_CODES

# VRs (PS3.6 2026c) of the table's attributes that pydicom 3.0.2's dictionary predates. Montage Name and Montage
# Channel Label are planted as LO; their action (X) does not depend on the VR.
NEW_VRS = {
    0x00081301: "SQ", 0x00081302: "SQ", 0x00081303: "SQ", 0x00081304: "SQ",  # diagnosis code sequences
    0x00100011: "SQ", 0x00100012: "LT", 0x00100013: "UT", 0x00100014: "SQ", 0x00100015: "SQ", 0x00100016: "UT",
    0x00100041: "SQ", 0x00100042: "UT", 0x00100043: "SQ", 0x00100044: "SQ", 0x00100045: "UT", 0x00100046: "SQ",
    0x00100047: "UR", 0x00102162: "UC",
    0x0040A034: "DT", 0x0040A035: "DT", 0x0040B034: "DT", 0x0040B036: "DT", 0x0040B03B: "LO", 0x0040B03F: "LO",
    0x0040E012: "UR",
}  # fmt: skip
# What each sequence's item holds: a free-text attribute the table does not list, and an instance UID (U).
ITEM_TEXT_TAG, ITEM_UID_TAG = 0x0040A160, 0x00081155  # TextValue (UT), ReferencedSOPInstanceUID (UI)
# Repeating groups: one planted element per masked row of the table.
MASKED_PLANTS = {(0x5000, 0x0000): (0x50002500, "LO"), (0x6000, 0x3000): (0x60003000, "OW"),
                 (0x6000, 0x4000): (0x60004000, "LT")}  # fmt: skip

# Deviations that let a planted value through (tests/node/deid_expected.py writes them out, the docs say why):
# - Retain Longitudinal Temporal Information with Modified Dates: DA and DT values are shifted by the patient's
#   offset (so the planted value must not survive, the shifted one must be there) and TM values are kept;
#   Patient's Birth Date and Birth Time stay under the basic profile (emptied, removed).
# - Attributes the node keeps (K): the public version stamps of coding resources.
KEPT = {tag for tag, code in DEVIATION_CODES.items() if code == "K"}
UID_ROOT = "1.2.826.0.1.3680043.10.9999."


@dataclass(frozen=True)
class Plant:
    """One planted value: where, under which row of the table, and the bytes that must not survive."""

    tag: int
    name: str
    vr: str
    action: str
    value: object
    needles: tuple[bytes, ...]  # empty: too short to search as bytes, checked on the stored element instead
    in_item: bool = False


def _text_needles(text: str) -> tuple[bytes, ...]:
    return text.encode("ascii"), text.encode("utf-16-le"), text.encode("utf-16-be")


class _Markers:
    """Distinct marker values per VR. Dates are spread so that no shifted date equals another marker."""

    def __init__(self) -> None:
        self.n = {"text": 0, "uid": 1000, "DA": 0, "DT": 0, "TM": 0, "num": 0, "bin": 0}

    def _next(self, kind: str) -> int:
        self.n[kind] += 1
        return self.n[kind]

    def value(self, vr: str) -> tuple[object, tuple[bytes, ...]]:
        if vr == "UI":
            uid = f"{UID_ROOT}{self._next('uid')}"  # four digits, so no marker is a prefix of another
            return uid, _text_needles(uid)
        if vr == "DA":
            # Windows of 28 days, 12 years apart: the node's shifts (30 to 3650 days back) never land on a marker.
            n = self._next("DA") - 1
            assert n < 56, "more DA rows than the two date windows hold; add a window"
            day = date(1901 + 12 * (n // 28), 1, 1) + timedelta(days=n % 28)
            return day.strftime("%Y%m%d"), _text_needles(day.strftime("%Y%m%d"))
        if vr == "DT":
            # Hours from 20: after a shifted date ending in 19 or 13, "19" + "01" or "13" + an hour
            # would spell a DA marker (1901..., 1913...) inside the stored value.
            n = self._next("DT")
            assert n < 4 * 60, "more DT rows than hours 20 to 23 hold"
            text = f"19310115{20 + n // 60:02d}{n % 60:02d}17.123456"
            return text, _text_needles(text)
        if vr == "TM":
            n = self._next("TM")
            return f"{10 + n // 60:02d}{n % 60:02d}41.5", ()
        if vr in ("DS", "IS"):
            n = self._next("num")
            text = f"77{n:04d}.25" if vr == "DS" else f"66{n:04d}"
            return text, _text_needles(text)
        if vr in ("US", "SS"):
            return 0x4D00 + self._next("num"), ()
        if vr == "AS":
            return f"{self._next('num'):03d}W", ()
        if vr in ("OB", "OW", "UN"):
            data = f"MKB{self._next('bin'):04d}QZX-bytes".encode("ascii")
            return data, (data,)
        text = f"MK{self._next('text'):04d}QZX"  # fits every text VR: 16 characters for SH, AE and CS
        return text, _text_needles(text)


def _vr(tag: int) -> str:
    if tag in NEW_VRS:
        return NEW_VRS[tag]
    return dictionary_VR(tag).split(" or ")[0]


def plant(ds: Dataset) -> list[Plant]:
    """Plant a marker in ``ds`` for every row of the standard's table; return what was planted."""
    markers = _Markers()
    plants: list[Plant] = []
    for tag, action, keyword, name in ROWS:
        vr = _vr(tag)
        label = keyword or name
        if vr == "SQ":
            item = Dataset()
            text, text_needles = markers.value("UT")
            uid, uid_needles = markers.value("UI")
            item.add_new(ITEM_TEXT_TAG, "UT", text)
            item.add_new(ITEM_UID_TAG, "UI", uid)
            ds.add_new(tag, "SQ", Sequence([item]))
            plants.append(Plant(tag, f"{label} > TextValue", "UT", action, text, text_needles, in_item=True))
            plants.append(Plant(tag, f"{label} > ReferencedSOPInstanceUID", "UI", action, uid, uid_needles, True))
            continue
        value, needles = markers.value(vr)
        if tag >> 16 == 0x0002:
            ds.file_meta[tag].value = value
        else:
            ds.add_new(tag, vr, value)
        plants.append(Plant(tag, label, vr, action, value, needles))
    for (group, element, _, _, action, name), (tag, vr) in zip(MASKED_ROWS, MASKED_PLANTS.values(), strict=True):
        assert (tag >> 16) & 0xFF00 == group, name
        assert element == 0 or tag & 0xFFFF == element, name
        value, needles = markers.value(vr)
        ds.add_new(tag, vr, value)
        plants.append(Plant(tag, name, vr, action, value, needles))
    return plants


def write_planted(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a Part 10 file with its command group elements (which pydicom's dcmwrite refuses).

    The command elements go first in implicit VR, as DICOM encodes a command set and pydicom reads it back.
    """
    command = Dataset({e.tag: e for e in ds if e.tag.group == 0})
    rest = Dataset({e.tag: e for e in ds if e.tag.group != 0})
    with path.open("wb") as raw:
        fp = DicomFileLike(raw)
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta)
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, command)
        fp.is_implicit_VR = False
        write_dataset(fp, rest)


def may_survive(p: Plant) -> bool:
    """Whether the standard's table, with the deviations written out above, lets the planted value through."""
    if p.in_item:
        return False  # every sequence of the table is removed, emptied, dummied, or its items cleaned
    if p.vr == "TM" and p.tag not in BIRTH_DATE_TIME:
        return True  # Modified Dates Option: times of day kept
    return p.tag in KEPT


def _shift(value: str, days: int) -> str:
    return (datetime.strptime(value[:8], "%Y%m%d").date() + timedelta(days=days)).strftime("%Y%m%d") + value[8:]


@dataclass(frozen=True)
class Stored:
    plants: list[Plant]
    data: bytes
    dataset: pydicom.FileDataset
    shift: int


@pytest.fixture
def stored(make_node, tmp_path: Path) -> Stored:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    plants = plant(ds)
    source = tmp_path / "in"
    source.mkdir()
    write_planted(ds, source / "planted.dcm")
    back = pydicom.dcmread(source / "planted.dcm")
    missing = [p.name for p in plants if not p.in_item and p.tag not in back and p.tag not in back.file_meta]
    assert missing == [], "planting failed"

    node = make_node(role=False)
    report = Ingestor(node).run([source])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    with node.sessions() as session:
        record = session.scalars(select(Record)).one()
        shift = node.vault.get_or_create(session, str(back.PatientID)).date_shift_days
    path = node.dir / record.path
    return Stored(plants, path.read_bytes(), pydicom.dcmread(path), shift)


def test_every_row_of_the_standard_table_is_planted(stored: Stored) -> None:
    assert len({p.tag for p in stored.plants}) == len(ROWS) + len(MASKED_ROWS) == 655
    assert sum(p.in_item for p in stored.plants) == 2 * sum(_vr(tag) == "SQ" for tag, *_ in ROWS)
    assert {p.vr for p in stored.plants} >= {"LO", "SH", "PN", "LT", "ST", "UT", "UC", "UR", "AE", "CS", "UI",
                                              "DA", "DT", "TM", "DS", "IS", "US", "AS", "OB", "OW", "UN"}


def _without_mapped_uids(stored: Stored) -> bytes:
    """The stored bytes with every UID the node minted ("2.25." + a random-looking integer) cut out.

    A minted UID is 39 random decimal digits, so a short numeric marker (an IS "66nnnn", a date) turns up
    inside one now and then (about one run in a hundred), which is no leak. Planted UIDs have another root
    and stay searchable.
    """
    minted = {str(e.value) for ds in (stored.dataset, stored.dataset.file_meta) for e in ds.iterall()
              if e.VR == "UI" and isinstance(e.value, str) and e.value.startswith("2.25.")}
    data = stored.data
    for uid in sorted(minted, key=len, reverse=True):
        data = data.replace(uid.encode("ascii"), b"")
    return data


def test_no_planted_value_survives_where_the_table_removes_or_replaces_it(stored: Stored) -> None:
    survivors = []
    haystack = _without_mapped_uids(stored)
    for p in stored.plants:
        if may_survive(p):
            continue
        if p.needles:
            found = any(needle in haystack for needle in p.needles)
        else:
            elem = stored.dataset.get(p.tag)
            found = elem is not None and elem.value == p.value
        if found:
            survivors.append(f"{p.name} ({p.tag >> 16:04X},{p.tag & 0xFFFF:04X}) {p.vr} {p.action}")
    assert survivors == [], f"{len(survivors)} planted values survived:\n" + "\n".join(survivors)


def test_planted_dates_come_out_shifted_by_the_patient_offset(stored: Stored) -> None:
    assert stored.shift != 0
    dates = [p for p in stored.plants if p.vr in ("DA", "DT") and not p.in_item]
    assert len(dates) > 100
    wrong = []
    for p in dates:
        elem = stored.dataset.get(p.tag)
        if p.tag in BIRTH_DATE_TIME:
            expected = None if elem is None else ""  # Z: emptied (or removed)
        elif p.tag in KEPT:
            expected = str(p.value)
        else:
            expected = _shift(str(p.value), stored.shift)
        if (str(elem.value) if elem is not None else None) != expected:
            wrong.append(f"{p.name}: {None if elem is None else elem.value!r}, expected {expected!r}")
    assert wrong == []


def test_planted_uids_come_out_mapped(stored: Stored) -> None:
    # The table's 57 UI rows less the two command elements and the file meta's (checked below).
    uids = [p for p in stored.plants if p.vr == "UI" and not p.in_item and p.tag >> 16 not in (0x0000, 0x0002)]
    assert len(uids) == 54
    not_mapped = [
        p.name for p in uids
        if p.tag in stored.dataset and not re.fullmatch(r"2\.25\.\d+", str(stored.dataset[p.tag].value))
    ]  # fmt: skip
    assert not_mapped == []
    assert stored.dataset.file_meta.MediaStorageSOPInstanceUID == stored.dataset.SOPInstanceUID


def test_planted_times_of_day_are_kept(stored: Stored) -> None:
    times = [p for p in stored.plants if p.vr == "TM" and p.tag not in BIRTH_DATE_TIME]
    assert len(times) > 40
    changed = [p.name for p in times if p.tag not in stored.dataset or str(stored.dataset[p.tag].value) != p.value]
    assert changed == []


def test_no_shift_the_node_can_draw_makes_a_shifted_date_spell_a_marker() -> None:
    """The search above is by bytes, so a shifted date or date-time must never contain another marker.

    It once did: a date-time shifted to a day 19, followed by the time 0101 and seconds 17, spelled the
    date marker 19010117, and the test failed about one run in thirty.
    """
    plants = plant(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    dated = [str(p.value) for p in plants if p.vr in ("DA", "DT") and not p.in_item]
    days_and_rest = [(datetime.strptime(v[:8], "%Y%m%d").toordinal(), v[8:]) for v in dated]
    # Only a marker of digits (a date, a number) can appear inside a run of digits.
    needles = {needle for p in plants for needle in p.needles if needle.isdigit()}
    assert len(needles) >= 56  # the date markers, at least
    low, high = SHIFT_RANGE
    spelled = []
    for days in range(low, high + 1):
        shifted = []
        for day, rest in days_and_rest:
            d = date.fromordinal(day + days)
            shifted.append(f"{d.year:04d}{d.month:02d}{d.day:02d}{rest}")
        text = "|".join(shifted).encode("ascii")
        spelled += [(days, needle) for needle in needles if needle in text]
    assert spelled == []
