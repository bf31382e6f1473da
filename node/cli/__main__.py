"""``python -m node.cli``: the same as ``metai-node``."""

from node.cli.main import app

app()
