"""Exceptions of the hospital node."""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error raised by the node."""


class NodeConfigError(NodeError, ValueError):
    """The node directory or its settings are missing or invalid."""


class KeyStoreError(NodeError, ValueError):
    """The hospital key cannot be created, imported or unlocked (e.g. wrong passphrase)."""


class IngestError(NodeError, ValueError):
    """A file cannot be ingested; the message is the reason recorded in the quarantine report."""


class DeidentificationError(IngestError):
    """A DICOM object cannot be de-identified safely."""


class BurnedInAnnotationError(DeidentificationError):
    """The image declares burned-in annotation (identifying text in the pixels)."""


class EnrolmentError(NodeError, ValueError):
    """A patient enrolment is refused (unknown patient, bad challenge or signature)."""


class PacsError(NodeError, ConnectionError):
    """The PACS cannot be reached or answered with an error."""


class DatasetError(NodeError, ValueError):
    """A dataset cannot be built, registered or verified."""


class StudyDecisionError(NodeError, ValueError):
    """This hospital cannot decide on a study: it does not exist, does not name the hospital, or awaits no decision."""
