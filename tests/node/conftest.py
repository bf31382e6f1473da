"""Fixtures of the node tests."""

from tests.node.orthanc_fixture import orthanc  # noqa: F401  (a real Orthanc for the PACS tests)
from tests.node.serve_fixture import secure_link, short_dir, start_serve  # noqa: F401  (metai-node serve's tests)
