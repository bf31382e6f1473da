"""A study round served by `metai-node serve`: each hospital runs serve against a TLS SuperLink that admits only the
keys the hospitals made themselves (`metai-node federation-key`), and the round is trained, signed by each serve's
signing agent and anchored on chain."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from contracts.studies import StudyStatus
from deploy.flower import make_security, run_app, start_superlink, stop, write_federation_config
from tests.federated.conftest import REPO, STUDY_CONFIG, running_study
from tests.node.serve_fixture import SecureLink, serve_env


@pytest.mark.slow
def test_one_round_on_nodes_run_by_serve(tmp_path: Path, exchange, actors, hospitals, coordinator_env,  # type: ignore[no-untyped-def]
                                         start_serve) -> None:
    study = running_study(exchange, actors, hospitals, rounds=1)
    security = make_security(tmp_path / "security", [])
    superlink = start_superlink(tmp_path / "superlink", security=security, extra_env=coordinator_env)
    link = SecureLink(superlink, security)
    runtimes = [Path(tempfile.mkdtemp(prefix="mse-")) for _ in hospitals]  # short: they hold a Unix socket
    try:
        serves = []
        for index, (h, runtime) in enumerate(zip(hospitals, runtimes, strict=True)):
            link.register(h.node.dir, f"hospital-{index}")
            serves.append(start_serve(serve_env(h.node.dir, link, runtime), name=f"serve-{index}"))
        node_ids = {s.wait_health(200)["children"]["supernode"]["node_id"] for s in serves}
        assert len(node_ids) == 2
        write_federation_config(superlink.flwr_home, "metai", superlink, security)
        result = run_app(REPO, flwr_home=superlink.flwr_home, federation="metai", timeout=600,
                         run_config={**STUDY_CONFIG, "study-id": study, "round-delay": 0.0})
        assert result.status == "finished:completed", result.logs[-3000:]
        for serve in serves:
            body = serve.wait_health(200)
            assert body["children"]["supernode"]["restarts"] == 0
            assert body["children"]["signer"]["restarts"] == 0
            os.kill(serve.proc.pid, signal.SIGTERM)
            assert serve.wait_exit() == 0
            assert "refused" not in (serve.log_dir / "signer.log").read_text()
    finally:
        stop(superlink)
        for runtime in runtimes:
            shutil.rmtree(runtime, ignore_errors=True)
    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    for h, serve in zip(hospitals, serves, strict=True):
        assert exchange.studies.contribution_of(study, 1, h.node.address).cohort_count == 12
        # The contribution was signed by the signing agent serve runs beside the SuperNode (its node config's
        # signer-socket), which logs each transaction it signs: one, from the hospital to the StudyRegistry.
        signed = re.findall(r"signed a contribution: transaction (0x[0-9a-f]{64})",
                            (serve.log_dir / "signer.log").read_text())
        assert len(signed) == 1
        tx = exchange.chain.w3.eth.get_transaction(signed[0])
        assert (tx["from"], tx["to"]) == (h.node.address, exchange.studies.address)
        assert "SuperNode ID:" in (serve.log_dir / "supernode.log").read_text()
