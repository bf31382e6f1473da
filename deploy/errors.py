"""Exceptions of the deploy package."""

from __future__ import annotations


class DeployError(Exception):
    """Root of every error raised by ``deploy``."""


class ServiceStartError(DeployError, RuntimeError):
    """A service (Anvil, SuperLink, ...) did not start; the message quotes its log."""


class StateFileUnreadable(ServiceStartError):
    """Anvil cannot read its state file: cut short by a kill while Anvil saved it, or not Anvil's."""


class ToolMissing(DeployError, FileNotFoundError):
    """A required program is not installed; the message says how to install it."""


class SettingsError(DeployError, ValueError):
    """A setting is missing or holds a placeholder value."""


class AdminRefused(DeployError, ValueError):
    """A ``metai-admin`` command refused before sending anything: unknown role, bad address, a refused seat change."""
