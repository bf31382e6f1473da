"""``metai-node``: the hospital node's command line, one module per topic.

- :mod:`node.cli.setup`: ``init``, ``status``, ``federation-key``;
- :mod:`node.cli.service`: ``serve``, ``health``;
- :mod:`node.cli.data`: ``ingest``, ``import-pacs``, ``datasets``, ``register``, ``proof``, ``verify``;
- :mod:`node.cli.patients`: ``challenge``, ``enrol``;
- :mod:`node.cli.studies`: ``studies``, ``approve``, ``decline``.

Every command runs inside one error boundary (:mod:`node.cli.boundary`, shared with
``python -m deploy`` and the signing agent): whatever goes wrong ends as one ``error: ...``
line on stderr and an exit code of :class:`node.exit_codes.ExitCode`, never a traceback or a
secret. The commands print; the work, database queries included, is done by the node's
modules. Heavy modules (web3, SQLAlchemy, the readers) are imported inside the commands, so a
command refused for its settings answers at once.
"""

from __future__ import annotations

from node.cli.main import app

__all__ = ["app"]
