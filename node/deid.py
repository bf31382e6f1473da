"""De-identify DICOM data sets with the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The rules live in ``node.deid_profile``: the standard's Table E.1-1 (generated from a pinned source, edition
recorded) and the node's deviations from it, each with its reason (also in docs/deidentification-dicom.md). This
module applies them:

- Retain Longitudinal Temporal Information with Modified Dates Option (DCM 113107): every DA and DT value of the
  patient, in the data set and in every sequence item, is shifted by the patient's whole-day offset, and TM values
  are kept (a whole-day shift leaves the time of day unchanged). A zero offset keeps the real dates, which is the
  Full Dates Option (DCM 113106), and the result says so. Patient's Birth Date and Birth Time stay governed by the
  basic profile (emptied / removed): they identify on their own.
- The patient keeps a link to the node's records: PatientName and PatientID receive the pseudonym as their dummy
  value; in nested items they follow the table.
- UIDs with action U are replaced through ``UidMapper`` (HMAC of the original), so studies, series and references
  stay consistent across files and runs without keeping a look-up table; D on a UI is mapped the same way. UIDs
  defined by DICOM itself (root 1.2.840.10008) are kept: they name classes and well-known frames, not the patient.
- The compound codes are resolved without IOD module types, to a choice that conforms whatever the type turns out
  to be: X/Z -> Z; X/D, Z/D and X/Z/D -> D (sequences: Z when allowed, else one empty item); X/Z/U* -> keep the
  sequence and replace the instance UIDs it holds (references survive).
- D writes a fixed dummy per VR (``deid_profile.DUMMY_BY_VR``). C is applied to dates and times as the date option
  above; C on any other VR would write the D dummy, since free text cannot be proven clean.
- A public attribute that the table does not list and whose VR holds free text (``deid_profile.FREE_TEXT_VRS``) is
  treated as X/Z/D unless it is on the allow-list ``deid_profile.FREE_TEXT_KEPT``; the result names them in a flag.
- Private attributes are removed (unless ``DeidPolicy.keep_private_tags``), so are curve groups (50xx) and whole
  overlay groups (60xx), group length elements (stale once anything changes), command elements (group 0000, never
  part of a stored instance), AE titles, original UIDs and private information in the file meta, and the 128-byte
  preamble (free-form, may hold a TIFF header).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from node.deid_profile import (
    BINARY_KEPT,
    BINARY_VRS,
    CODE_STRINGS_OF_TEXT,
    DUMMY_BY_VR,
    FREE_TEXT_KEPT,
    FREE_TEXT_VRS,
    MODALITIES,
    NEWER_VRS,
    NOT_LONGITUDINAL,
    REMOVED_REPEATING_GROUPS,
    RULES_BY_TAG,
)
from node.errors import BurnedInAnnotationError, DeidentificationError, NodeConfigError

__all__ = ["PROFILE_NAME", "DeidPolicy", "DeidResult", "PatientContext", "UidMapper", "deidentify"]

PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
MODIFIED_DATES_OPTION = "Retain Longitudinal Temporal Information Modified Dates Option"
FULL_DATES_OPTION = "Retain Longitudinal Temporal Information Full Dates Option"
PRIVATE_KEPT_NOTE = "Private attributes retained without review"
BURNED_IN_KEPT_NOTE = "Burned-in annotation declared and retained"

_CODES = {PROFILE_NAME: "113100", MODIFIED_DATES_OPTION: "113107", FULL_DATES_OPTION: "113106"}
_CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    "113106": FULL_DATES_OPTION,
    "113107": MODIFIED_DATES_OPTION,
}
_DICOM_UID_ROOT = "1.2.840.10008."
_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PATIENT_NAME, _PATIENT_ID, _BURNED_IN, _VISUAL_FEATURES = 0x00100010, 0x00100020, 0x00280301, 0x00280302
_MODALITY = 0x00080060
# SOP classes whose pixels commonly carry burned-in text (Secondary Capture family, Ultrasound).
_TEXT_PRONE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.6.", "1.2.840.10008.5.1.4.1.1.3.1")
# The file meta elements kept (an allow-list): what a reader needs to decode the file. The
# implementation's class UID and version name are dropped too; the writer puts its own in.
# Everything else names the sending and receiving systems (AE titles, presentation addresses),
# the real-time video source, or carries private data.
_FILE_META_KEPT = frozenset({0x00020001, 0x00020002, 0x00020003, 0x00020010})
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
# The character repertoire of the VRs whose values are codes, numbers, UIDs, ages, dates and
# times (PS3.5 6.2), with backslash between values, space/NUL padding and, leniently, lower
# case and "/" in codes (both seen in real files). Text outside it cannot be such a value: it is removed.
_FORMATTED = {
    "CS": re.compile(rb"[A-Za-z0-9 _/\\]*"),
    "IS": re.compile(rb"[ +\-0-9\\]*"),
    "DS": re.compile(rb"[ +\-0-9.eE\\]*"),
    "UI": re.compile(rb"[0-9. \x00\\]*"),
    "AS": re.compile(rb"(?:[0-9]{1,3} ?[DWMY] ?)?(?:\\[0-9]{1,3} ?[DWMY] ?)*"),
    "DA": re.compile(rb"[0-9. \-\\]*"),
    "TM": re.compile(rb"[0-9.: \-\\]*"),
    "DT": re.compile(rb"[0-9.+ \-\\]*"),
}
# Byte size of one value of the numeric VRs; a kept element of these must hold a whole number of
# values, as many as the standard's VM allows.
_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8, "UV": 8}
# Text VRs of one value whose text may contain a backslash.
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
# The actions _Cleaner.clean applies, as _Cleaner._action resolves the table's codes (X/Z/D and the like).
_ACTIONS = frozenset({"X", "Z", "D", "U", "U*", "C", "K"})
_CHECKED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI", *_NUMBER_SIZES}
)
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_LTIM_ORDER = ("UNMODIFIED", "MODIFIED", "REMOVED")
_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_DT = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")


@dataclass(frozen=True)
class PatientContext:
    """Who the data set belongs to, pseudonymously: the pseudonym and this patient's date offset."""

    pseudonym: str
    date_shift_days: int

    def __post_init__(self) -> None:
        if not isinstance(self.pseudonym, str) or not _PSEUDONYM.fullmatch(self.pseudonym):
            raise DeidentificationError(
                f"pseudonym {self.pseudonym!r} cannot be written as PatientID and PatientName: expected 1-64 "
                "letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. 'MTP-9F3A2C7D1B')"
            )
        if isinstance(self.date_shift_days, bool) or not isinstance(self.date_shift_days, int):
            raise DeidentificationError(
                f"date_shift_days is {self.date_shift_days!r}, expected a whole number of days (int)"
            )


class UidMapper:
    """Deterministic UID replacement: the same original UID always maps to the same new UID on this node."""

    def __init__(self, secret: bytes) -> None:
        """Create a mapper keyed by the node's UID secret.

        Args:
            secret: at least 16 random bytes, kept by the node; whoever holds it can test guesses of
                original UIDs, so it never leaves the node.

        Raises:
            NodeConfigError: the secret is not bytes or shorter than 16 bytes.
        """
        if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
            size = f"{len(secret)} bytes" if isinstance(secret, bytes | bytearray) else type(secret).__name__
            raise NodeConfigError(
                f"UID secret is {size}, expected at least 16 random bytes; "
                "generate one with secrets.token_bytes(32) and keep it in the node settings"
            )
        self._secret = bytes(secret)

    def map(self, uid: str) -> str:
        """Return the replacement of ``uid``: "2.25." and the first 128 bits of HMAC-SHA256(secret, uid).

        Args:
            uid: the original UID; trailing padding (space or NUL) is ignored.

        Returns:
            A valid DICOM UID of at most 44 characters, never equal to ``uid``.

        Raises:
            DeidentificationError: ``uid`` is empty.
        """
        original = str(uid).strip(" \x00")
        if not original:
            raise DeidentificationError("cannot map an empty UID; leave empty UID values as they are")
        digest = hmac.new(self._secret, original.encode("utf-8"), hashlib.sha256).digest()
        mapped = f"2.25.{int.from_bytes(digest[:16], 'big')}"
        if mapped == original:  # only if the input is this mapper's own fixed point; use the other half
            mapped = f"2.25.{int.from_bytes(digest[16:], 'big')}"
        return mapped


@dataclass(frozen=True)
class DeidPolicy:
    """Choices left to the node; the defaults are the profile's.

    ``burned_in``: what to do when BurnedInAnnotation is YES: "refuse" raises BurnedInAnnotationError,
    "flag" keeps the image, reports a flag and records it in DeidentificationMethod. ``keep_private_tags``:
    keep private attributes (dates in them are still shifted); the result then no longer conforms to the
    profile, which DeidentificationMethod and the flags say.
    """

    burned_in: Literal["refuse", "flag"] = "refuse"
    keep_private_tags: bool = False


@dataclass(frozen=True)
class DeidResult:
    """The de-identified copy and what was done to it.

    ``removed`` counts deleted elements (a removed sequence counts once); ``replaced`` counts elements whose
    value changed (emptied, dummy, pseudonym, mapped UID, shifted date). Added markers are not counted.
    """

    dataset: pydicom.Dataset
    flags: tuple[str, ...]
    removed: int
    replaced: int


def deidentify(
    ds: pydicom.Dataset,
    patient: PatientContext,
    uids: UidMapper,
    policy: DeidPolicy = DeidPolicy(),
    *,
    in_place: bool = False,
) -> DeidResult:
    """De-identify a copy of ``ds`` with the basic profile and the longitudinal temporal date option.

    Args:
        ds: the data set as read (file meta included when read from a file); not modified.
        patient: the pseudonym and the date offset of the patient the data set belongs to.
        uids: the node's UID mapper, shared by every data set so references stay consistent.
        policy: what to do with declared burned-in annotation and with private attributes.
        in_place: de-identify ``ds`` itself instead of a copy (for callers that discard the
            original anyway, such as ingest: the deep copy is a third of the work).

    Returns:
        The de-identified copy with flags and counts.

    Raises:
        BurnedInAnnotationError: BurnedInAnnotation is YES and the policy is "refuse".
        DeidentificationError: a date cannot be shifted by the patient's offset, or the input is not a data set.
    """
    if not isinstance(ds, pydicom.Dataset):
        raise DeidentificationError(f"expected a pydicom Dataset, got {type(ds).__name__}")
    burned_in = _declares_burned_in(ds)
    if burned_in and policy.burned_in == "refuse":
        raise BurnedInAnnotationError(
            "BurnedInAnnotation (0028,0301) is YES: the pixels may show identifying text, which this profile "
            "does not clean; review the image, or de-identify with DeidPolicy(burned_in='flag') to keep it "
            "flagged for manual review"
        )
    flags = _pixel_flags(ds, burned_in)
    out = ds if in_place else copy.deepcopy(ds)
    cleaner = _Cleaner(uids, policy, patient.date_shift_days)
    cleaner.clean(out, top=True)
    if cleaner.unlisted_text:
        cleaner.flags.append(
            "free text outside the profile table replaced: " + ", ".join(sorted(cleaner.unlisted_text))
        )
    if cleaner.unlisted_binary:
        cleaner.flags.append(
            "binary content outside the profile table removed: " + ", ".join(sorted(cleaner.unlisted_binary))
        )
    cleaner.clean_file_meta(out)
    cleaner.set_pseudonym(out, patient.pseudonym)
    cleaner.check_modality(out)
    if isinstance(out, FileDataset):
        # The copy must not point back at the original file or hold its bytes.
        out.preamble = b"\x00" * 128 if out.preamble is not None else None
        out.filename = None
        out.buffer = None
    methods = [PROFILE_NAME, MODIFIED_DATES_OPTION if patient.date_shift_days else FULL_DATES_OPTION]
    if patient.date_shift_days == 0:
        flags.append("date_shift_days is 0: real dates and times kept (Full Dates Option)")
    if policy.keep_private_tags:
        methods.append(PRIVATE_KEPT_NOTE)
        flags.append("private attributes kept by policy; the profile does not cover them")
    if burned_in:
        methods.append(BURNED_IN_KEPT_NOTE)
    _mark_deidentified(out, methods, "MODIFIED" if patient.date_shift_days else "UNMODIFIED")
    return DeidResult(out, tuple(flags + cleaner.flags), cleaner.removed, cleaner.replaced)


def _removed_by_tag(tag: BaseTag) -> bool:
    """Whether a public element goes whatever its value: a command element or group length, or a repeating group.

    Command elements do not belong in a stored instance and group lengths go stale once anything
    changes; the table removes the curve, overlay-data and similar repeating groups as a whole.
    """
    if tag.is_private:
        return False
    return tag.group == 0 or tag.element == 0 or (tag.group & 0xFF00) in REMOVED_REPEATING_GROUPS


def _declares_burned_in(ds: pydicom.Dataset) -> bool:
    return _BURNED_IN in ds and str(ds[_BURNED_IN].value).strip().upper() == "YES"


def _pixel_flags(ds: pydicom.Dataset, burned_in: bool) -> list[str]:
    flags: list[str] = []
    if burned_in:
        flags.append("burned-in annotation declared; kept by policy")
    elif _BURNED_IN not in ds or not str(ds[_BURNED_IN].value).strip():
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class.startswith(_TEXT_PRONE_SOP_PREFIXES):
            flags.append(
                f"BurnedInAnnotation (0028,0301) absent on a {UID(sop_class).name} image, a kind that often "
                "has text in the pixels; the pixels were not checked"
            )
    if _VISUAL_FEATURES in ds and str(ds[_VISUAL_FEATURES].value).strip().upper() == "YES":
        flags.append("RecognizableVisualFeatures (0028,0302) is YES: the image may show the patient's face")
    return flags


class _Cleaner:
    """Applies the table to one data set and its items, counting what it does."""

    def __init__(self, uids: UidMapper, policy: DeidPolicy, shift_days: int) -> None:
        self.uids = uids
        self.policy = policy
        self.shift_days = shift_days
        self.removed = 0
        self.replaced = 0
        self.flags: list[str] = []
        self.unlisted_text: set[str] = set()
        self.unlisted_binary: set[str] = set()

    def clean(self, ds: pydicom.Dataset, top: bool = False) -> None:
        drop_private = not self.policy.keep_private_tags
        for tag in list(ds.keys()):
            # Removed undecoded: most tags of a vendor's instance are private.
            if (drop_private and tag.is_private) or _removed_by_tag(tag):
                del ds[tag]
                self.removed += 1
                continue
            if top and tag in (_PATIENT_NAME, _PATIENT_ID):
                continue  # set_pseudonym writes them
            raw = ds.get_item(tag)
            if self._declared_vr_refused(raw, tag) or self._malformed(raw, tag):
                del ds[tag]
                self.removed += 1
                continue
            if self._kept_unread(raw, tag):
                continue
            if self._removed_unread(ds, tag):
                del ds[tag]
                self.removed += 1
                continue
            elem = ds[tag]
            action = self._action(elem)
            if action not in _ACTIONS:  # fail closed: an action this engine does not apply keeps nothing
                raise DeidentificationError(
                    f"{_describe(elem)}: the profile table gives the action {action!r}, which this engine does not "
                    f"apply (it knows {', '.join(sorted(_ACTIONS))}); fix the table before de-identifying"
                )
            if action == "X":
                del ds[tag]
                self.removed += 1
            elif action == "Z":
                self._set(elem, _empty(elem.VR))
            elif action == "D":
                self._set(elem, _dummy(elem.VR))
            elif action == "U":
                if elem.VR == "UN":
                    elem.VR = "UI"  # the mapped value is text; written as UN it would need to be bytes
                self._set(elem, self._mapped_uids(elem.value))
            elif action == "C" and elem.VR in ("DA", "DT"):
                self._shift(elem)
            elif action == "C" and elem.VR not in _TEMPORAL_VRS | {"SQ"}:
                self._set(elem, _dummy(elem.VR))
                self.flags.append(f"{_describe(elem)}: free text replaced by a dummy (cleaning not available)")
            elif elem.VR == "SQ":  # K, U* and C on a sequence: keep it, clean every item
                for item in elem.value:
                    self.clean(item)
            elif elem.tag.is_private and elem.VR in ("DA", "DT"):
                self._shift(elem)

    def _declared_vr_refused(self, raw: DataElement | RawDataElement | None, tag: BaseTag) -> bool:
        """Whether a public element goes because the VR its file declares is not the standard's.

        An explicit-VR file says what it likes about a VR, and every rule here depends on it
        (times of day are kept, unlisted attributes are kept unless their VR holds text), so a
        name declared as TM, or an unlisted description declared as OB, would pass as kept. The
        standard's dictionary decides instead; an element it does not define, or declares with
        another VR, cannot be judged and is removed (flagged). UN (the sender did not know the
        VR) is decoded with the dictionary's VR and judged by it.
        """
        if tag.is_private:
            return False
        declared = raw.VR if raw is not None else None
        if _vr_conforms(int(tag), declared):
            return False
        standard = _standard_vrs(int(tag))
        name = keyword_for_tag(tag) or "attribute"
        self.flags.append(
            f"{name} {tag}: not defined by the standard, removed" if standard is None
            else f"{name} {tag}: declared with VR {declared}, the standard defines {'/'.join(sorted(standard))}; "
            "removed"
        )
        return True

    def _malformed(self, raw: DataElement | RawDataElement | None, tag: BaseTag) -> bool:
        """Whether a kept value holds what its VR or its number of values cannot.

        Such an element is kept (or shifted) by its rule, so text written into it would pass: a
        name in a code string or a note in a time (characters the VR does not allow), or bytes
        spelling text as numbers (more values than the standard allows: eight pixel values where
        one is). Checked on the bytes as read.
        """
        if tag.is_private or raw is None:
            return False
        declared: str | None = raw.VR
        if declared in (None, "UN") or " or " in declared:  # not in the file, or left unresolved by pydicom
            declared = _vr_to_check(int(tag))
        if declared is None or declared not in _CHECKED_VRS or not _value_kept(int(tag)):
            return False  # not checkable, or replaced or removed by its rule: never reaches the store
        value = raw.value
        if isinstance(raw, DataElement):  # already decoded
            if declared in _NUMBER_SIZES:
                return self._refuse_count(tag, len(_values(value)))
            value = "\\".join(str(v) for v in _values(value)).encode("utf-8", "replace")
        if not isinstance(value, bytes) or not value:
            return False
        size = _NUMBER_SIZES.get(declared)
        if size is not None:
            if declared in ("FL", "FD") and len(value) % size == 0 and not _plausible_reals(raw, declared, value):
                self.flags.append(
                    f"{keyword_for_tag(tag) or 'attribute'} {tag}: values outside any physical range "
                    f"(not finite, above 1e9 or below 1e-12 in magnitude); removed"
                )
                return True
            return self._refuse_count(tag, len(value) / size)
        pattern = _FORMATTED.get(declared)
        if pattern is not None and not pattern.fullmatch(value):
            self.flags.append(f"{keyword_for_tag(tag) or 'attribute'} {tag}: not a valid {declared} value; removed")
            return True
        return declared not in _SINGLE_TEXT_VRS and self._refuse_count(tag, value.count(b"\\") + 1)

    def _refuse_count(self, tag: BaseTag, count: float) -> bool:
        """Whether ``count`` values are more or fewer than the standard's VM for ``tag`` (flagged if so)."""
        vm = _dictionary_vm(int(tag))
        if vm is None or count == 0 or _vm_allows(vm, count):  # an empty element holds nothing
            return False
        shown = f"{count:g}" if count == int(count) else f"{count:.2f}"
        self.flags.append(
            f"{keyword_for_tag(tag) or 'attribute'} {tag}: {shown} values where the standard allows {vm}; removed"
        )
        return True

    def _kept_unread(self, raw: DataElement | RawDataElement | None, tag: BaseTag) -> bool:
        """Whether the element is kept as is, decided from its tag and VR without decoding it.

        Most elements of an instance are kept; decoding each one (and re-encoding it on write)
        was most of the cost of de-identification.
        """
        vr = raw.VR if raw is not None else None
        if tag.is_private:
            return False  # kept by policy, decoded: a private date is shifted like any other
        if vr == "TM" and tag not in NOT_LONGITUDINAL:
            return True  # a whole-day date shift leaves times of day as they are, whatever the rule
        if vr is None or vr in ("SQ", "UN") or vr in _TEMPORAL_VRS:
            return False  # implicit or unknown VR: decoded with the dictionary's VR and judged by it
        rule = RULES_BY_TAG.get(int(tag))
        if rule is None:
            return _unlisted_code(int(tag), vr) == "K"
        return rule.action == "K"

    def _removed_unread(self, ds: pydicom.Dataset, tag: BaseTag) -> bool:
        """Whether the element is removed whatever its value, decided without decoding it.

        Decoding an element only to delete it (a whole sequence, for some) costs as much as
        keeping it; :meth:`_action` gives the same answer from the decoded element.
        """
        raw = ds.get_item(tag)
        vr = raw.VR if raw is not None else None
        if vr is None or vr in _TEMPORAL_VRS:
            return False  # dates are shifted, not removed (the modified dates option)
        rule = RULES_BY_TAG.get(int(tag))
        return rule is not None and rule.action == "X"

    def _action(self, elem: DataElement) -> str:
        """The action for an element :func:`_removed_by_tag` and the policy on private tags let through."""
        tag, vr = elem.tag, elem.VR
        if tag.is_private:
            return "K"  # only reached when the policy keeps private attributes (clean removes them otherwise)
        rule = RULES_BY_TAG.get(int(tag))
        if vr in _TEMPORAL_VRS and tag not in NOT_LONGITUDINAL and (rule is None or rule.action != "K"):
            return "C"
        code = rule.action if rule is not None else self._unlisted(elem)
        if code == "X/Z/U*":
            return "U*" if vr == "SQ" else "Z"
        if code == "X/Z":
            return "Z"
        if code in ("X/D", "Z/D", "X/Z/D"):
            # An empty value cannot be Type 1, so D is never the required choice for it.
            if vr == "SQ" or not _values(elem.value):
                return "Z" if "Z" in code else ("D" if vr == "SQ" else "X")
            code = "D"
        if code == "D" and vr == "UI":
            return "U"  # a mapped UID is a valid dummy that keeps distinct values distinct
        return code

    def _unlisted(self, elem: DataElement) -> str:
        """The code of a public attribute the table does not list (see :func:`_unlisted_code`), noted for the flags."""
        code = _unlisted_code(int(elem.tag), elem.VR)
        if code == "X/Z/D" and _values(elem.value):
            self.unlisted_text.add(_describe(elem))
        elif code == "X":
            self.unlisted_binary.add(_describe(elem))
        return code

    def _set(self, elem: DataElement, value: Any) -> None:
        if elem.VR == "SQ":
            changed = len(elem.value) != len(value) or any(len(item) for item in elem.value)
        else:
            changed = _values(elem.value) != _values(value)
        if changed:
            elem.value = value
            self.replaced += 1

    def _mapped_uids(self, value: Any) -> list[str]:
        # An undecoded value (VR UN) is read as ASCII, the character repertoire of UIDs.
        texts = [v.decode("ascii", "replace") if isinstance(v, bytes) else v for v in _values(value)]
        # A list, also of one value or none: pydicom stores one value as that value, and _set leaves an
        # empty element as it is.
        return [v if not v.strip(" \x00") or v.startswith(_DICOM_UID_ROOT) else self.uids.map(v) for v in texts]

    def _shift(self, elem: DataElement) -> None:
        if self.shift_days == 0:
            return
        shift = _shift_da if elem.VR == "DA" else _shift_dt
        try:
            shifted = [shift(v, self.shift_days) for v in _values(elem.value)]
        except ValueError:
            self._set(elem, _empty(elem.VR))
            self.flags.append(f"{_describe(elem)}: not a valid {elem.VR} value, so it could not be shifted; emptied")
            return
        except OverflowError as exc:
            raise DeidentificationError(
                f"{_describe(elem)} cannot be shifted by {self.shift_days} days: the result falls outside years "
                "1-9999; use a smaller date_shift_days"
            ) from exc
        self._set(elem, shifted)  # one value is stored as that value, as for _mapped_uids

    def clean_file_meta(self, ds: pydicom.Dataset) -> None:
        meta = getattr(ds, "file_meta", None)
        if not isinstance(meta, FileMetaDataset):
            return
        for tag in list(meta.keys()):
            if int(tag) not in _FILE_META_KEPT:
                del meta[tag]
                self.removed += 1
        if "MediaStorageSOPInstanceUID" not in meta:
            return
        elem = meta["MediaStorageSOPInstanceUID"]
        sop_instance = str(ds.get("SOPInstanceUID", ""))
        self._set(elem, sop_instance if sop_instance else self._mapped_uids(elem.value))

    def check_modality(self, ds: pydicom.Dataset) -> None:
        """Modality is kept by the table; a value that is not one of the standard's defined terms becomes OT."""
        if _MODALITY in ds and str(ds[_MODALITY].value or "").strip() not in MODALITIES | {""}:
            self._set(ds[_MODALITY], "OT")
            self.flags.append("Modality (0008,0060): not a defined term of the standard; replaced by OT")

    def set_pseudonym(self, ds: pydicom.Dataset, pseudonym: str) -> None:
        for tag, vr in ((_PATIENT_NAME, "PN"), (_PATIENT_ID, "LO")):
            if tag in ds:
                self._set(ds[tag], pseudonym)
            else:
                ds.add_new(tag, vr, pseudonym)


def _mark_deidentified(ds: pydicom.Dataset, methods: list[str], temporal: str) -> None:
    ds.PatientIdentityRemoved = "YES"
    earlier = [str(v) for v in _values(ds.get("DeidentificationMethod", ""))] if "DeidentificationMethod" in ds else []
    ds.DeidentificationMethod = list(dict.fromkeys(v for v in [*earlier, *methods] if v))
    items = list(ds.DeidentificationMethodCodeSequence) if "DeidentificationMethodCodeSequence" in ds else []
    present = {(str(i.get("CodeValue", "")), str(i.get("CodingSchemeDesignator", ""))) for i in items}
    for method in methods:
        value = _CODES.get(method)
        if value is not None and (value, "DCM") not in present:
            item = pydicom.Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = _CODE_MEANINGS[value]
            items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    # Never claim less modification than an earlier de-identification already made.
    earlier_ltim = str(ds.get("LongitudinalTemporalInformationModified", "")).strip().upper()
    rank = max(_LTIM_ORDER.index(temporal), _LTIM_ORDER.index(earlier_ltim) if earlier_ltim in _LTIM_ORDER else 0)
    ds.LongitudinalTemporalInformationModified = _LTIM_ORDER[rank]


@functools.lru_cache(maxsize=8192)
def _vr_conforms(tag: int, declared: str | None) -> bool:
    """Whether a public ``tag`` is defined by the standard and ``declared`` is one of its VRs (None, UN: unknown)."""
    standard = _standard_vrs(tag)
    return standard is not None and (declared in (None, "UN") or set(str(declared).split(" or ")) <= standard)


@functools.lru_cache(maxsize=4096)
def _value_kept(tag: int) -> bool:
    """Whether a public element's value can reach the store as it is: kept by its rule, unlisted, or a date/time."""
    rule = RULES_BY_TAG.get(tag)
    standard = _standard_vrs(tag)
    return rule is None or rule.action == "K" or bool(standard and standard & _TEMPORAL_VRS)


@functools.lru_cache(maxsize=4096)
def _standard_vrs(tag: int) -> frozenset[str] | None:
    """The VRs the standard's dictionary allows for a public ``tag`` ("US or SS" gives both), None if unknown."""
    try:
        return frozenset(dictionary_VR(tag).split(" or "))
    except KeyError:
        return frozenset({NEWER_VRS[tag]}) if tag in NEWER_VRS else None


def _vr_to_check(tag: int) -> str | None:
    """The VR to check a value of ``tag`` by when the file does not say: the standard's, if it has one.

    "US or SS" (a pixel value, signed as the image is) counts values alike either way, so such a
    choice of numbers of one size is checked as the first of them; any other choice is not checkable.
    """
    standard = _standard_vrs(tag)
    if standard is None:
        return None
    if len(standard) == 1:
        return next(iter(standard))
    sizes = {_NUMBER_SIZES.get(vr) for vr in standard}
    return min(standard) if len(sizes) == 1 and None not in sizes else None


def _plausible_reals(raw: DataElement | RawDataElement, vr: str, value: bytes) -> bool:
    """Whether the FL/FD values in ``value`` are finite and 0 or between 1e-12 and 1e9 in magnitude.

    Bytes of text read as floating point numbers are almost always far outside that window (the
    exponent comes from a character code), while measured quantities in mm, s, mT/m, degrees are
    inside it.
    """
    little = getattr(raw, "is_little_endian", True) is not False
    dtype = np.dtype(("<" if little else ">") + ("f4" if vr == "FL" else "f8"))
    numbers = np.abs(np.frombuffer(value, dtype=dtype))
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.isfinite(numbers) & ((numbers == 0) | ((numbers >= 1e-12) & (numbers <= 1e9)))))


@functools.lru_cache(maxsize=4096)
def _dictionary_vm(tag: int) -> str | None:
    """The standard's value multiplicity of a public ``tag`` ("1", "2-2n", "1-n"), None if unknown."""
    try:
        return str(dictionary_VM(tag))
    except KeyError:
        return None


def _vm_allows(vm: str, count: float) -> bool:
    """Whether ``count`` values fit the value multiplicity ``vm`` ("3", "1-3", "1-n", "2-2n")."""
    if count != int(count):
        return False  # a part of a value: not what the VR stores
    n = int(count)
    low_text, _, high_text = vm.partition("-")
    low = int(low_text)
    if not high_text:
        return n == low
    if high_text == "n":
        return n >= low
    if high_text.endswith("n"):  # "2-2n": multiples of the step
        step = int(high_text[:-1])
        return n >= low and n % step == 0
    return low <= n <= int(high_text)


def _unlisted_code(tag: int, vr: str) -> str:
    """The action for a public attribute the table does not list, by its (standard) VR.

    Free text (and the code strings people type) is replaced, X/Z/D; binary content (documents,
    keys, encrypted or signed copies, colour profiles) is removed, X, except what the pixels need;
    anything else (numbers, codes, UIDs, dates) is kept, K.
    """
    if tag in FREE_TEXT_KEPT:
        return "K"
    vrs = set(vr.split(" or "))
    if vrs & BINARY_VRS:
        return "K" if tag in BINARY_KEPT else "X"
    if vrs & FREE_TEXT_VRS or tag in CODE_STRINGS_OF_TEXT:
        return "X/Z/D"
    return "K"


def _values(value: Any) -> list[Any]:
    """Return the values of an element as a list of str (bytes stay bytes), empty for an empty element."""
    if value is None or value == "" or value == b"":
        return []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [v if isinstance(v, bytes) else str(v) for v in items]


def _empty(vr: str) -> Any:
    """Return the zero-length value of ``vr`` as pydicom reads it back from a file.

    Only sequences, text and binary values are ever emptied (Z and the failed date shift): the
    table empties no number, and an unlisted number is kept.
    """
    if vr == "SQ":
        return Sequence()
    return b"" if vr in _BINARY_VRS else ""


def _dummy(vr: str) -> Any:
    if vr == "SQ":
        return Sequence([pydicom.Dataset()])  # non-zero length, and nothing of the original
    return DUMMY_BY_VR[vr]  # the VR of a decoded element is one VR; every VR but SQ and UI (mapped) is listed


def _describe(elem: DataElement) -> str:
    return f"{elem.keyword or ('private attribute' if elem.tag.is_private else 'attribute')} {elem.tag}"


def _shift_da(value: str, days: int) -> str:
    text = str(value).strip()
    if not text:
        return text
    match = _DA.fullmatch(text)
    if match is None:
        raise ValueError(text)
    shifted = date(int(match[1]), int(match[2]), int(match[3])) + timedelta(days=days)
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"


def _shift_dt(value: str, days: int) -> str:
    """Shift the date part of a DT value, keeping its precision, time of day and UTC offset."""
    text = str(value).strip()
    if not text:
        return text
    match = _DT.fullmatch(text)
    if match is None:
        raise ValueError(text)
    year, month, day, time, offset = match.groups()
    # A partial date is shifted from the start of its period, then cut back to the same precision.
    shifted = date(int(year), int(month or 1), int(day or 1)) + timedelta(days=days)
    digits = f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"[: 4 + (2 if month else 0) + (2 if day else 0)]
    return f"{digits}{time or ''}{offset or ''}"
