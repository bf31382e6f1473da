"""An FD value is kept when it is 0 or between 1e-12 and 1e9 in magnitude, and removed otherwise.

That window (node.deid's documented rule for telling measured quantities from text spelled as
floating point numbers) is checked at and just beyond both edges, and with NaN and infinity, on
values read from a little-endian file as a scanner writes them. The values and the verdicts come
from the rule as documented; the file is written with pydicom.
"""

from __future__ import annotations

import math

import pydicom
import pytest

from node.deid import PatientContext, UidMapper, deidentify
from tests.node.fd_written import fd_written

B_VALUE = 0x00189087  # Diffusion b-value, FD, VM 1; not listed in the profile table, so kept if plausible


def _read_back(value: float) -> pydicom.Dataset:
    return fd_written({B_VALUE: value}, uid="1.2.999.999.9.1", patient_id="MARK-0009-ZQX", little_endian=True)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (0.0, True),
        (1e-12, True),
        (-1e-12, True),
        (9.99e-13, False),
        (1e9, True),
        (-1e9, True),
        (1_000_000_000.5, False),
        (1e10, False),
        (math.nan, False),
        (math.inf, False),
    ],
)
def test_fd_value_is_kept_only_inside_the_physical_window(value: float, kept: bool) -> None:
    result = deidentify(_read_back(value), PatientContext("MTP-FD0001", -30), UidMapper(b"r" * 32))
    flagged = [f for f in result.flags if "(0018,9087)" in f and "physical range" in f]
    if kept:
        assert result.dataset[B_VALUE].value == value
        assert flagged == []
    else:
        assert B_VALUE not in result.dataset
        assert len(flagged) == 1
