"""A DT of year or month precision is shifted from the start of its period and keeps its precision.

PS3.5 allows DT values that stop after the year ("2020") or the month ("202003"). The node shifts
such a value as if it named the first day of that period, then cuts the result back to the same
precision. The cases below sit where that start matters: a year-only value shifted back across
New Year, a month-only value shifted back across the month's first day. The expected values are
computed here with the standard library's calendar.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from node.deid import PatientContext, UidMapper, deidentify


def _expected(value: str, days: int) -> str:
    """Shift from the first day of the period ``value`` names; keep as many digits as it had."""
    start = date(int(value[:4]), int(value[4:6] or 1), int(value[6:8] or 1))
    return (start + timedelta(days=days)).strftime("%Y%m%d")[: len(value)]


@pytest.mark.parametrize(
    ("value", "days", "literal"),
    [
        ("2020", -20, "2019"),  # 2020-01-01 - 20 days = 2019-12-12
        ("2020", -1, "2019"),
        ("202003", -1, "202002"),  # 2020-03-01 - 1 day = 2020-02-29
        ("202001", -1, "201912"),
        ("20200301", -1, "20200229"),
    ],
)
def test_partial_datetime_shifts_from_the_start_of_its_period(value: str, days: int, literal: str) -> None:
    assert _expected(value, days) == literal  # the calendar agrees with the hand-worked value
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.999.8.1"
    ds.PatientID = "MARK-0008-ZQX"
    ds.Modality = "CT"
    ds.AcquisitionDateTime = value
    out = deidentify(ds, PatientContext("MTP-DT0001", days), UidMapper(b"t" * 32)).dataset
    assert out.AcquisitionDateTime == literal
