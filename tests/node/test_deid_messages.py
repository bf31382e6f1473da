"""What the de-identification tells a person: the refusal of a pseudonym says what to write instead,
and a date that cannot be shifted is named, private or not, in the flag that reports it.
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from node.deid import DeidPolicy, PatientContext, UidMapper, deidentify
from node.errors import DeidentificationError


def test_a_refused_pseudonym_is_told_the_characters_allowed_and_an_example() -> None:
    with pytest.raises(DeidentificationError) as refused:
        PatientContext("MARK 0010 ZQX", 1)
    message = str(refused.value)
    assert "'MARK 0010 ZQX'" in message
    assert "expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit" in message
    assert "(e.g. 'MTP-9F3A2C7D1B')" in message


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_an_unshiftable_private_date_is_named_as_a_private_attribute() -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.999.10.1"
    ds.PatientID = "MARK-0010-ZQX"
    ds.Modality = "CT"
    ds.ContentDate = "2020-13-45"
    ds.private_block(0x0009, "MARK_CREATOR", create=True).add_new(0x01, "DA", "MARK0010")
    result = deidentify(ds, PatientContext("MTP-MSG0001", 12), UidMapper(b"m" * 32), DeidPolicy(keep_private_tags=True))
    assert "private attribute (0009,1001): not a valid DA value, so it could not be shifted; emptied" in result.flags
    assert "ContentDate (0008,0023): not a valid DA value, so it could not be shifted; emptied" in result.flags
    assert result.dataset[0x00091001].value in ("", None)
