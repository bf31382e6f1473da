"""``metai-admin``: the consortium admin's command line.

- :mod:`deploy.admin.cli`: the application and the ``roles grant|revoke|list`` commands;
- :mod:`deploy.admin.seat_cli`: the ``admin status|transfer|accept|cancel|delay`` commands;
- :mod:`deploy.admin.roles`: role names, addresses, who holds each role (events checked
  against ``hasRole``) and which roles may not be combined;
- :mod:`deploy.admin.seat`: the admin seat's state (admin, delay, pending transfer and delay change);
- :mod:`deploy.admin.session`: the deployment, the admin key, and sending a transaction or printing
  it (``--calldata``).

Every command runs inside the error boundary the other command lines share
(:mod:`node.cli.boundary`): whatever goes wrong ends as one ``error: ...`` line on stderr and an
exit code of :class:`node.exit_codes.ExitCode` (a revert shows its custom error's name and
arguments), never a traceback or the admin key. Settings are those of ``python -m deploy``
(:mod:`deploy.settings`): METAI_RPC_URL, METAI_MANIFEST, METAI_ADMIN_KEY.
"""

from __future__ import annotations

from deploy.admin.cli import app

__all__ = ["app"]
