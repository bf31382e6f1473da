"""The allow-list rows and the checks that apply them, shared by every raw format.

A raw file is de-identified by building a new file from the fields an allow-list names, each
checked by its kind; anything the list does not name is never read into the output. One row is
a :class:`FieldRule`: the field's path in its format, its kind, the action and why. The same rows
drive the rebuild and print the tables of ``docs/deidentification-raw.md``, so the code and the
documentation cannot say different things (a test compares them).

Kinds and the actions they allow:

========== ===============================================================================
integer    keep: a whole number (an integer type, or text that is only digits); anything else
           is dropped; a number outside the row's ``limits`` refuses the file
real       keep: a finite number; outside the row's ``limits`` it refuses the file (text packed
           into a number's bytes makes an absurd value, which no physical range holds)
enumerated keep: one of the listed values exactly (or a member of the schema's enumeration);
           anything else is dropped, or replaced by the row's ``fallback``
pattern    keep: text matching the row's regular expression in full (machine-written codes)
uid        map: replaced by the node's keyed hash (``node.deid.UidMapper``), as in DICOM
identifier map (as a UID) or drop: a number or code that points back to a hospital record
date       shift: moved by the patient's whole-day offset, as DICOM DA values
datetime   shift: the date part moved by the patient's offset; the time of day is kept
time       keep: a whole-day shift leaves the time of day unchanged (DICOM TM values are kept)
pseudonym  replace: the patient's pseudonym
derived    replace: a value the node writes itself (format name, version, its own name)
text       drop: free text cannot be shown to be free of names
structure  keep (its allowed children are rebuilt) or drop (with everything inside)
data       keep: numeric arrays, rebuilt with a fixed type and no attributes; or drop
provenance keep: a value checked by the kind its key has in the provenance table
========== ===============================================================================
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError

__all__ = ["DROP", "FieldRule", "RuleSet", "check", "markdown_table", "shift_date", "shift_datetime"]

Kind = Literal[
    "integer", "real", "enumerated", "pattern", "uid", "identifier", "date", "datetime", "time", "pseudonym",
    "derived", "text", "structure", "data", "provenance",
]
Action = Literal["keep", "map", "shift", "replace", "drop"]

_ALLOWED: dict[str, frozenset[str]] = {
    "integer": frozenset({"keep"}),
    "real": frozenset({"keep"}),
    "enumerated": frozenset({"keep", "drop"}),
    "pattern": frozenset({"keep"}),
    "uid": frozenset({"map"}),
    "identifier": frozenset({"map", "drop", "replace"}),
    "date": frozenset({"shift", "drop"}),
    "datetime": frozenset({"shift"}),
    "time": frozenset({"keep"}),
    "pseudonym": frozenset({"replace"}),
    "derived": frozenset({"replace"}),
    "text": frozenset({"drop"}),
    "structure": frozenset({"keep", "drop"}),
    "data": frozenset({"keep", "drop"}),
    "provenance": frozenset({"keep"}),
}
_INTEGER = re.compile(r"[+-]?\d{1,19}")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?")


class _Drop:
    """The result of a check that refuses a value: the field is left out of the output."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()


@dataclass(frozen=True)
class FieldRule:
    """One row of an allow-list.

    Attributes:
        path: where the field is, in the format's own terms (``/geometry@n_views``,
            ``studyInformation/studyDate``); ``*`` stands for any one path segment.
        kind: what the value is (see the module docstring).
        action: keep, map, shift, replace or drop.
        reason: why, for the documentation (PS3.15 rows are cited by attribute name and code).
        values: the accepted values of an enumerated field (empty: the schema's enumeration).
        pattern: the regular expression a ``pattern`` field must match in full.
        fallback: written instead of a refused enumerated value, when the reader needs one.
        limits: the physical range ``(lowest, highest)`` of an integer or real field, inclusive.
    """

    path: str
    kind: Kind
    action: Action
    reason: str
    values: tuple[str, ...] = ()
    pattern: str = ""
    fallback: str | None = None
    limits: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.action not in _ALLOWED[self.kind] | {"drop"}:  # any field may be left out
            raise ValueError(f"rule {self.path}: action {self.action!r} is not one of {sorted(_ALLOWED[self.kind])} "
                             f"for kind {self.kind!r}")
        if self.kind == "pattern" and not self.pattern:
            raise ValueError(f"rule {self.path}: a pattern rule needs its regular expression")
        if self.limits is not None and (self.kind not in ("integer", "real") or self.limits[0] > self.limits[1]):
            raise ValueError(f"rule {self.path}: limits {self.limits} need an integer or real kind and low <= high")

    def at(self, path: str) -> FieldRule:
        """The same rule for another path (a provenance key under a format's own prefix)."""
        return replace(self, path=path)


class RuleSet:
    """An ordered allow-list with look-up by path; the first row that matches a path applies."""

    def __init__(self, rules: Iterable[FieldRule]) -> None:
        """Index ``rules``; two rows with the same path are a mistake in the table."""
        self.rules = tuple(rules)
        seen: set[str] = set()
        for rule in self.rules:
            if rule.path in seen:
                raise ValueError(f"allow-list names {rule.path} twice")
            seen.add(rule.path)
        self._exact = {r.path: r for r in self.rules if "*" not in r.path}
        self._wild = [(r.path.split("/"), r) for r in self.rules if "*" in r.path]

    def __iter__(self) -> Iterator[FieldRule]:
        """The rows in table order."""
        return iter(self.rules)

    def get(self, path: str) -> FieldRule | None:
        """Return the rule for ``path``, or None: the field is not on the list and is dropped."""
        if path in self._exact:
            return self._exact[path]
        parts = path.split("/")
        for pattern, rule in self._wild:
            if len(pattern) == len(parts) and all(p in ("*", s) for p, s in zip(pattern, parts, strict=True)):
                return rule
        return None


def check(rule: FieldRule, value: Any, patient: PatientContext, uids: UidMapper) -> Any:
    """Return what the output holds for ``value`` under ``rule``, or :data:`DROP`.

    Numbers come back as Python int or float, text as str; schema enumerations and XML dates
    and times keep their own types. ``derived`` and ``structure`` rows are handled by the format.

    Raises:
        DeidentificationError: a date cannot be shifted by the patient's offset (out of range), or a
            number lies outside the row's physical limits.
    """
    if rule.action == "drop":
        return DROP
    if rule.kind == "pseudonym":
        return patient.pseudonym
    value = _plain(value)
    if value is None:
        return DROP
    if rule.kind == "integer":
        return _within(rule, _integer(value))
    if rule.kind == "real":
        return _within(rule, _real(value))
    if rule.kind == "enumerated":
        text = getattr(value, "value", value)  # a schema Enum member stands for its value
        accepted = isinstance(text, str) and (not rule.values or text in rule.values)
        return value if accepted else (rule.fallback if rule.fallback is not None else DROP)
    if rule.kind == "pattern":
        return value if isinstance(value, str) and re.fullmatch(rule.pattern, value) else DROP
    if rule.kind in ("uid", "identifier") and rule.action == "map":
        text = str(value).strip(" \x00")
        return uids.map(text) if text else DROP
    if rule.kind == "identifier":  # replace: the neutral value of its type
        return 0
    if rule.kind == "date":
        return shift_date(value, patient.date_shift_days, rule.path)
    if rule.kind == "datetime":
        return shift_datetime(value, patient.date_shift_days, rule.path)
    if rule.kind == "time":
        return value if not isinstance(value, str | bytes) else DROP  # only a parsed time, never text
    raise ValueError(f"rule {rule.path}: kind {rule.kind!r} is applied by the format's own code")


def _within(rule: FieldRule, number: Any) -> Any:
    """``number``, if it lies within the rule's limits; refuse the file otherwise."""
    if number is DROP or rule.limits is None:
        return number
    low, high = rule.limits
    if not low <= number <= high:
        # The value stays out of the message: it may be text in a number's clothing.
        raise DeidentificationError(
            f"{rule.path} lies outside {_limit(low)} to {_limit(high)}, the range a scanner writes; the value is "
            "damaged or carries other data, so the file is refused: correct it and ingest the file again"
        )
    return number


def _limit(number: float) -> str:
    """A limit as people write it: whole numbers in full up to ten digits, others in short form."""
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e10 else f"{number:g}"


def _plain(value: Any) -> Any:
    """Decode HDF5 and numpy scalars into Python values; arrays and other objects are refused."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, np.ndarray):
        return _plain(value.item()) if value.shape == () and value.dtype.kind in "iufSU" else None
    if isinstance(value, np.generic):
        return value.item() if value.dtype.kind in "iufSU" else None
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        return DROP
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return DROP


def _real(value: Any) -> Any:
    if isinstance(value, bool):
        return DROP
    if not (isinstance(value, int | float) or (isinstance(value, str) and _REAL.fullmatch(value.strip()))):
        return DROP
    number = float(value)
    return number if math.isfinite(number) else DROP


def shift_date(value: Any, days: int, where: str) -> Any:
    """Shift an XML date (``xsdata`` XmlDate) or an ISO date text by ``days``; DROP if unreadable.

    Raises:
        DeidentificationError: the shifted date falls outside years 1-9999.
    """
    from xsdata.models.datatype import XmlDate

    try:
        if isinstance(value, XmlDate):
            day = value.to_date()
        elif isinstance(value, str):
            day = _dt.date.fromisoformat(value.strip())
        else:
            return DROP
    except ValueError:
        return DROP  # an unreadable date is left out rather than kept unshifted
    shifted = _add_days(day, days, where)
    return XmlDate(shifted.year, shifted.month, shifted.day, value.offset) if isinstance(value, XmlDate) else (
        shifted.isoformat())


def shift_datetime(value: Any, days: int, where: str) -> Any:
    """Shift the date of an ISO 8601 date-time text by ``days``, keeping time and UTC offset; DROP if unreadable.

    Raises:
        DeidentificationError: the shifted date falls outside years 1-9999.
    """
    if not isinstance(value, str):
        return DROP
    try:
        moment = _dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return DROP
    day = _add_days(moment.date(), days, where)
    return moment.replace(year=day.year, month=day.month, day=day.day).isoformat()


def _add_days(day: _dt.date, days: int, where: str) -> _dt.date:
    try:
        return day + _dt.timedelta(days=days)
    except OverflowError:
        # The value itself stays out of the message: it would land in the quarantine reason.
        raise DeidentificationError(
            f"{where}: a date cannot be shifted by {days} days (the result falls outside years 1-9999); "
            "check the date in the source file or use a smaller date_shift_days"
        ) from None


def markdown_table(rules: Iterable[FieldRule]) -> str:
    """Return the rows as a Markdown table: field, kind, action, accepted values, reason."""
    lines = ["| field | kind | action | accepted | reason |", "|---|---|---|---|---|"]
    for rule in rules:
        accepted = ", ".join(f"`{v}`" for v in rule.values) if rule.values else (
            f"`{rule.pattern}`" if rule.pattern else "")
        if rule.fallback is not None:
            accepted += f"; otherwise `{rule.fallback}`"
        if rule.limits is not None:
            accepted = f"{_limit(rule.limits[0])} to {_limit(rule.limits[1])}"
        cells = [f"`{rule.path}`", rule.kind, rule.action, accepted, rule.reason]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
