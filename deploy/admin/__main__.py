"""``python -m deploy.admin``: the same as ``metai-admin``."""

from deploy.admin.cli import app

app()
