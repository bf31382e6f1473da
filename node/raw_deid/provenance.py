"""Provenance keys raw files may keep: sinogram ``/provenance`` attributes, ISMRMRD ``metai.*`` user parameters.

Provenance is free-form text in both formats, so every key is named here with the kind of value it
may hold, and every value is checked against that kind: numbers must be numbers, codes must be one
of the values raw_data's writers produce, phantom and lesion descriptions must match the exact
machine-written form. A key not listed is dropped; so is a listed key whose value fails its check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from node.deid import PatientContext, UidMapper
from node.raw_deid.rules import DROP, FieldRule, check

__all__ = ["DEIDENTIFICATION_NOTE", "PROVENANCE_RULES", "clean_provenance"]

#: What the node writes as the ``deidentification`` provenance value of every raw file it stores.
DEIDENTIFICATION_NOTE = (
    "MeTAI node raw allow-list 1: rebuilt from the fields of docs/deidentification-raw.md only; "
    "patient pseudonymised, dates shifted by the patient's offset, UIDs mapped with the node's key"
)
_NUMBER = r"-?\d{1,4}\.\d"
_LESION = rf"centre_mm=\({_NUMBER}, {_NUMBER}\) radius_mm=\d{{1,4}}\.\d contrast_hu=-?\d{{1,5}}"


def _scanner_names() -> tuple[str, ...]:
    from raw_data.scanners import profile_names

    return profile_names()


_SEED = (0.0, float(2**32 - 1))
PROVENANCE_RULES: tuple[FieldRule, ...] = (
    FieldRule("scanner_profile", "enumerated", "keep", "which virtual scanner made the data; a listed profile name",
              values=_scanner_names()),
    FieldRule("noise_seed", "integer", "keep", "seed of the simulated noise: reproduces a synthetic scan "
              "(a 32-bit seed)", limits=_SEED),
    FieldRule("phantom_seed", "integer", "keep", "seed of the digital phantom: reproduces a synthetic patient "
              "(a 32-bit seed)", limits=_SEED),
    FieldRule("dose_factor", "real", "keep", "relative dose of the scan, a physical parameter", limits=(0.0, 1000.0)),
    FieldRule("incident_flux", "real", "keep", "photons per detector element and view, a physical parameter",
              limits=(0.0, 1e12)),
    FieldRule("mu_water_per_mm", "real", "keep", "attenuation of water used for HU conversion (about 0.02 per mm)",
              limits=(0.0, 1.0)),
    FieldRule("noise_std", "real", "keep", "standard deviation of simulated k-space noise", limits=(0.0, 1e6)),
    FieldRule("noise", "enumerated", "keep", "which noise model was applied",
              values=("poisson+electronic+blur", "none")),
    FieldRule("pattern", "enumerated", "keep", "k-space undersampling pattern", values=("equispaced", "random")),
    FieldRule("phantom", "pattern", "keep",
              "description of a digital phantom in the exact form raw_data.phantoms writes; any other text is dropped",
              pattern=r"ct_head seed=\d{1,10} lesions=\d{1,3} scale=\d{1,3}\.\d{3} tilt_rad=-?\d{1,2}\.\d{4}"),
    FieldRule("lesion", "pattern", "keep",
              "planted lesions of a synthetic phantom (position mm, radius mm, contrast HU) as the CT tasks write them",
              pattern=rf"none|{_LESION}(; {_LESION}){{0,20}}"),
    FieldRule("synthetic", "enumerated", "keep", "whether the data are simulated", values=("true", "false")),
    FieldRule("created_at", "datetime", "shift", "creation time: shifted with the patient's dates"),
    FieldRule("acquired_at", "datetime", "shift", "acquisition time: shifted with the patient's dates"),
    FieldRule("created_by", "text", "drop", "free text naming software; the node records its own name instead"),
    FieldRule("source", "text", "drop",
              "free text; a virtual scan's DICOM pixel-data hash would also link back to the PACS image"),
    FieldRule("patient_id", "identifier", "drop", "the hospital's local patient id: read to find the patient, "
              "never stored"),
    FieldRule("patient", "pseudonym", "replace", "the patient's pseudonym, written by the node"),
    FieldRule("deidentification", "derived", "replace", "what the node did (method note), written by the node"),
)
_BY_KEY = {rule.path: rule for rule in PROVENANCE_RULES}


def clean_provenance(
    items: Iterable[tuple[str, Any]], patient: PatientContext, uids: UidMapper
) -> Iterator[tuple[str, str]]:
    """Yield the (key, value) pairs to store: listed keys with checked values, then the node's own.

    Parameters:
        items: the source's provenance, key by key (values as read: text, bytes or numbers).
        patient: the pseudonym and date offset.
        uids: the node's UID mapper (no provenance key is a UID today; passed for symmetry).

    Raises:
        DeidentificationError: a date cannot be shifted by the patient's offset, or a number lies
            outside its key's physical limits.
    """
    for key, value in items:
        rule = _BY_KEY.get(key)
        if rule is None or rule.action in ("drop", "replace"):
            continue  # unlisted, dropped, or written by the node below
        kept = check(rule, value, patient, uids)
        if kept is not DROP:
            yield key, repr(kept) if isinstance(kept, float) else str(kept)
    yield "patient", patient.pseudonym
    yield "deidentification", DEIDENTIFICATION_NOTE
