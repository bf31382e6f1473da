"""The Flower ServerApp of the coordinator: reads its settings, runs the study (coordinator/federation.py)."""

from __future__ import annotations

import json
import logging
import sys

from eth_account import Account
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from contracts.exchange import Exchange
from coordinator.core.config import CoordinatorSettings
from coordinator.federated.reply_pulls import shorten_reply_pull_backoff
from coordinator.federation import FederationConfig, run_study

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the study named in the run config (``study-id``) to completion."""
    coordinator_log = logging.getLogger("metai.coordinator")
    if not coordinator_log.handlers:  # the per-round lines go to the run's log (``flwr log``, deploy study run)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        coordinator_log.addHandler(handler)
        coordinator_log.setLevel(logging.INFO)
    settings = CoordinatorSettings()
    cfg = FederationConfig.from_run_config(context.run_config, anchor=settings.anchor)  # refused before any key
    rpc_url, passphrase = settings.require()
    shorten_reply_pull_backoff(backoff=cfg.reply_pull_backoff)  # a half-pushed reply costs 0.05 s, not Flower's 1 s
    coordinator = Account.from_key(Account.decrypt(json.loads(settings.key_file.read_text("utf-8")), passphrase))
    run_study(
        grid,
        cfg,
        Exchange.connect(rpc_url, settings.manifest),
        coordinator,
        settings.model_dir,
    )
