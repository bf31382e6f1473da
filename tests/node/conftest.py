"""Fixtures of the node tests."""

from tests.node.orthanc_fixture import orthanc  # noqa: F401  (a real Orthanc for the PACS tests)
