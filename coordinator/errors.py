"""Exceptions of the coordinator."""

from __future__ import annotations


class CoordinatorError(Exception):
    """Root of every error raised by the coordinator."""


class CoordinatorConfigError(CoordinatorError, ValueError):
    """A coordinator setting is missing or invalid."""


class StudyAborted(CoordinatorError, RuntimeError):
    """A study could not continue (too few nodes contributed, budget exhausted, ...)."""


class ModelCardError(CoordinatorError, ValueError):
    """A model card cannot be written or read: its facts disagree, or a file is missing or malformed."""
