"""Fixtures of the deploy tests: the ``metai-admin`` command line (tests/deploy/admin_fixtures.py)."""

from tests.deploy.admin_fixtures import cli

__all__ = ["cli"]
