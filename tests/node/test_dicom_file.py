"""The node's DICOM file encoder writes exactly what pydicom writes, for every public test file."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pydicom
import pytest

from node.deid import DeidPolicy, PatientContext, UidMapper, deidentify
from node.dicom_file import encode_file
from tests.node.public_dicom import installed_test_files

PATIENT = PatientContext("MTP-0123456789", -40)
UIDS = UidMapper(b"u" * 32)


def _public_files() -> list[str]:
    files = []
    for name in installed_test_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(name)
            except Exception:
                continue
        if hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta:
            files.append(name)
    return files


FILES = _public_files()


def _pydicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_the_corpus_is_not_empty() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("name", FILES, ids=lambda n: Path(n).name)
def test_de_identified_file_encodes_as_pydicom_writes_it(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(name)
        out = deidentify(ds, PATIENT, UIDS, DeidPolicy(burned_in="flag"), in_place=True).dataset
        try:
            expected = _pydicom_bytes(copy.deepcopy(out))
        except Exception as exc:
            with pytest.raises(type(exc)):
                encode_file(out)
            return
        assert encode_file(out) == expected


@pytest.mark.parametrize("name", FILES[:12], ids=lambda n: Path(n).name)
def test_file_as_read_encodes_as_pydicom_writes_it(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(name)
        try:
            expected = _pydicom_bytes(copy.deepcopy(ds))
        except Exception as exc:
            with pytest.raises(type(exc)):
                encode_file(ds)
            return
        assert encode_file(ds) == expected
