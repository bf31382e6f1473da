"""Exceptions of the training tasks.

Everything :mod:`tasks` raises on purpose derives from :class:`TaskError` and from the
builtin it refines, so a caller may catch either. A message names the offending value, what
was expected, and how to fix it.
"""

from __future__ import annotations


class TaskError(Exception):
    """Root of every error raised by :mod:`tasks`."""


class TaskDataError(TaskError, ValueError):
    """A record or an array cannot be used as input of a task: wrong kind, format or shape.

    A node building a cohort catches this per record, quarantines the record with the message
    as the reason, and goes on with the others.
    """


class UnknownTaskError(TaskError, KeyError):
    """No task has the requested code (the message lists the known codes)."""

    def __str__(self) -> str:
        # KeyError would print the repr of its argument, quotes and all.
        return str(self.args[0]) if self.args else ""


class WeightsError(TaskError, ValueError):
    """Model weights do not fit the model, or a weights file is unreadable."""


class TrainingError(TaskError, ValueError):
    """A training configuration or call is invalid (bad hyper-parameter, missing global model)."""


class ProtocolError(TaskError, ValueError):
    """A round's message or reply lacks a key of :mod:`tasks.protocol`, or holds a value of another type."""
