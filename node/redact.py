"""Messages about a file that carry none of the file's values.

The libraries that read DICOM and HDF5 put element values, attribute values and file names
into their exception and warning messages (``Invalid value for VR DA: '19701301'``). Such a
message may become a quarantine reason, a note in the ingest summary or a log line, all of
which people read, so it is reduced to its words first: quoted literals are dropped, and so is
every word that also occurs in the file itself (a value can only come from there), and every
number of four digits or more (a date or an id can be stored in binary, where no text shows it).
"""

from __future__ import annotations

import re

REDACTED = "<value>"
_MAX_LEN = 300
_QUOTED = re.compile(r"""[bBrRuU]?'[^'\n]*'|[bBrRuU]?"[^"\n]*"|`[^`\n]*`""")
# Runs of characters a value can be made of: letters, digits and the joiners of names, ids,
# dates and paths. Two characters are enough to be a value (an age, a sex code, initials).
_LONG_NUMBER = re.compile(r"\d{4}")
_WORD = re.compile(r"[^\s,;:()\[\]{}<>=|]{2,}")
# Words of the libraries' own messages that say what went wrong; kept even when the file
# happens to contain them, because they carry no identifier.
_GRAMMAR = frozenset((
    "a", "an", "the", "of", "in", "to", "for", "from", "with", "without", "and", "or", "not", "no",
    "is", "are", "was", "were", "be", "been", "by", "at", "on", "as", "it", "its", "this", "that",
    "value", "values", "file", "files", "data", "element", "elements", "tag", "tags", "vr", "length",
    "offset", "position", "byte", "bytes", "expected", "found", "got", "unable", "cannot", "can't",
    "could", "invalid", "unknown", "error", "object", "objects", "header", "dataset", "group",
    "attribute", "attributes", "address", "addr", "size", "eof", "eoa",
))


def value_free(message: str, content: bytes = b"") -> str:
    """``message`` without quoted literals and without any word that occurs in ``content``.

    Parameters:
        message: text from a library (an exception or a warning).
        content: the bytes of the file the message is about.

    Returns:
        The message with every possible value replaced by ``<value>``, at most 300 characters.
    """
    text = _QUOTED.sub(REDACTED, message)
    text = _WORD.sub(lambda m: _redact_word(m.group(0), content), text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LEN else text[: _MAX_LEN - 1] + "…"


def describe(exc: BaseException, content: bytes = b"") -> str:
    """``ExceptionClass: message`` with the message made value-free (see :func:`value_free`)."""
    message = value_free(str(exc), content)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _redact_word(word: str, content: bytes) -> str:
    core = word.strip(".'\"-_/\\")
    if core.lower() in _GRAMMAR or len(core) < 2 or core == REDACTED:
        return word
    if _LONG_NUMBER.search(core):
        # A date, a record number or an id, whether or not the file spells it in text: a number
        # stored in binary (an HDF5 integer attribute) is printed by the reader but occurs nowhere
        # in the file's bytes or its decoded text.
        return REDACTED
    if core.isdigit():
        return word  # a small count or position, not an identifier
    for encoding in ("utf-8", "latin-1"):
        try:
            needle = core.encode(encoding)
        except UnicodeEncodeError:
            continue
        if needle in content:
            return REDACTED
    return word
