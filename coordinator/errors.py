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


class SiweError(CoordinatorError, ValueError):
    """A Sign-In with Ethereum (EIP-4361) message was refused (coordinator.core.siwe)."""


class SiweMalformed(SiweError):
    """The text is not an EIP-4361 message, or a field cannot be written as one."""


class SiweSignatureMismatch(SiweError):
    """The signature is unreadable, or was not made by the message's address over the message's text."""


class SiweDomainMismatch(SiweError):
    """The message asks to sign in to another domain than this service's."""


class SiweUriMismatch(SiweError):
    """The message's URI is not the sign-in URI of this service."""


class SiweChainMismatch(SiweError):
    """The message is bound to another chain than this service's."""


class SiweExpired(SiweError):
    """The message's expiration time has passed, or the message has none."""


class SiweNotYetValid(SiweError):
    """The message's not-before time, or its issue time beyond the clock skew, lies in the future."""
