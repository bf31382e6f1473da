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
    rpc_url, passphrase = settings.require()
    coordinator = Account.from_key(Account.decrypt(json.loads(settings.key_file.read_text("utf-8")), passphrase))
    cfg = context.run_config
    run_study(
        grid,
        FederationConfig(
            study_id=int(cfg["study-id"]),
            task=str(cfg["task"]),
            min_nodes=int(cfg["min-nodes"]),
            local_epochs=int(cfg["local-epochs"]),
            lr=float(cfg["lr"]),
            batch_size=int(cfg["batch-size"]),
            proximal_mu=float(cfg["proximal-mu"]),
            poll_interval=float(cfg["poll-interval"]),
            round_timeout=float(cfg["round-timeout"]),
            wait_nodes=float(cfg["wait-nodes"]),
            round_delay=float(cfg["round-delay"]),
            eval_examples=int(cfg["eval-examples"]),
            eval_seed=int(cfg["eval-seed"]),
            dp_noise_multiplier=float(cfg["dp-noise-multiplier"]),
            dp_clipping_norm=float(cfg["dp-clipping-norm"]),
            dp_delta=float(cfg["dp-delta"]),
            anchor=settings.anchor,
            robustness_patients=int(cfg["robustness-patients-per-cell"]),
        ),
        Exchange.connect(rpc_url, settings.manifest),
        coordinator,
        settings.model_dir,
    )
