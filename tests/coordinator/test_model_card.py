"""The model card a study writes next to its final model: every figure recomputed from the saved
model, the held-out data and the chain.

One real study (Anvil, two hospital nodes, Flower's simulation engine, two rounds) runs once for
the module; the tests then read what it left. The first hospital's catalog marks three of its
records as real scans (as a hospital holding real data would), so the card's synthetic share is
a number the test knows independently: (5 + 8) / 16 in every round.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select, update

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from contracts.studies import StudyRequest
from coordinator.card_robustness import NOT_AVAILABLE
from coordinator.errors import ModelCardError
from coordinator.model_card import CARD_JSON, CARD_MD, CURVES_PNG, build_card, read_card
from coordinator.study_log import StudyLog, read_study_log
from deploy.deployer import deploy_contracts
from deploy.federation import NodeSpec
from deploy.simulation import simulate
from node.node import Node
from tests.conftest import NODE_PASSPHRASE, Actors, lighten_node_key
from tests.coordinator.card_checks import recompute_card
from tests.federated.conftest import TASK, populate, write_coordinator_env

RECORDS = 8
REAL_AT_ALPHA = 3
ROUNDS = 2


@dataclass
class CardStudy:
    exchange: Exchange
    study_id: int
    folder: Path  # models/study-<id>
    nodes: list[Node]


def _mark_real(node: Node, count: int) -> None:
    from node.catalog import Record

    with node.sessions.begin() as session:
        ids = session.scalars(select(Record.record_id).order_by(Record.record_id).limit(count)).all()
        session.execute(update(Record).where(Record.record_id.in_(ids)).values(synthetic=False))


@pytest.fixture(scope="module")
def card_study(tmp_path_factory: pytest.TempPathFactory, chain: Chain, actors: Actors) -> CardStudy:
    from node.datasets import list_datasets, register
    from tasks import task_code_hash

    root = tmp_path_factory.mktemp("card-study")
    exchange = Exchange(chain, deploy_contracts(chain, actors.admin, initial_roles=[
        (Role.RESEARCHER, actors.researcher.address), (Role.COORDINATOR, actors.coordinator.address)]))
    manifest = root / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    nodes, specs = [], []
    for index, name in enumerate(("Alpha", "Beta")):
        node = Node.init(root / f"node-{name}", hospital_name=f"{name} Hospital", rpc_url=chain.rpc_url,
                         manifest=manifest, passphrase=NODE_PASSPHRASE)
        lighten_node_key(node.dir)
        chain.send_value(actors.admin, node.address, 10**18)
        exchange.roles.grant(actors.admin, Role.HOSPITAL, node.address)
        keys: dict[str, LocalAccount] = populate(node, root / f"data-{index}", f"TEST-{'AB'[index]}", RECORDS,
                                                 seed=500 + index, register=index != 0)  # Alpha: below
        for key in keys.values():
            exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(
                key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
        if index == 0:
            _mark_real(node, REAL_AT_ALPHA)
            for draft in list_datasets(node):  # one real and one synthetic dataset on chain
                register(node, draft.name)
        secret = root / f"{name}.passphrase"
        secret.write_text(NODE_PASSPHRASE)
        secret.chmod(0o600)
        nodes.append(node)
        specs.append(NodeSpec(node.dir, secret))
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(n.address for n in nodes),
        task_code_hash=task_code_hash(TASK), rounds=ROUNDS))
    for node in nodes:
        exchange.studies.approve(node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    env = write_coordinator_env(root, exchange, actors)  # its manifest is the one the nodes were made with
    simulate(specs, study_id, {"task": TASK, "min-nodes": 2, "local-epochs": 1, "eval-examples": 24,
                               "round-delay": 0.0, "wait-nodes": 60.0,
                               # the smallest robustness table the evaluation accepts keeps the module quick
                               "robustness-patients-per-cell": 4}, coordinator_env=env)
    return CardStudy(exchange, study_id, root / "models" / f"study-{study_id}", nodes)


@pytest.mark.slow
def test_the_card_is_written_next_to_the_final_model(card_study: CardStudy) -> None:
    names = {p.name for p in card_study.folder.iterdir()}
    assert {"final.npz", CARD_JSON, CARD_MD, CURVES_PNG} <= names
    card = read_card(card_study.folder / CARD_JSON)
    assert card["study"]["id"] == card_study.study_id
    assert card["study"]["status"] == "COMPLETED"
    assert [r["round"] for r in card["rounds"]] == list(range(1, ROUNDS + 1))


@pytest.mark.slow
def test_the_cards_metrics_and_hashes_are_recomputed_from_the_saved_model(card_study: CardStudy) -> None:
    card = read_card(card_study.folder / CARD_JSON)
    recomputed = recompute_card(card_study.folder)
    last = card["rounds"][-1]["held_out"]
    assert recomputed.accuracy == last["accuracy"]
    assert recomputed.loss == pytest.approx(last["loss"], rel=1e-6, abs=1e-7)
    assert recomputed.examples == last["examples"] == 24
    record = card_study.exchange.studies.study(card_study.study_id)
    assert recomputed.weights_hash == card["model"]["weights_hash"] == "0x" + record.final_model_hash.hex()
    for r in card["rounds"]:
        assert r["model_hash"] == "0x" + card_study.exchange.studies.round_model_hash(card_study.study_id,
                                                                                       r["round"]).hex()


@pytest.mark.slow
def test_the_card_states_each_hospitals_commitment_as_the_chain_holds_it(card_study: CardStudy) -> None:
    card = read_card(card_study.folder / CARD_JSON)
    studies = card_study.exchange.studies
    for r in card["rounds"]:
        assert {c["hospital"] for c in r["contributions"]} == {n.address for n in card_study.nodes}
        for c in r["contributions"]:
            on_chain = studies.contribution_of(card_study.study_id, r["round"], c["hospital"])
            assert (c["cohort_count"], c["cohort_root"], c["block"]) == (
                on_chain.cohort_count, "0x" + on_chain.cohort_root.hex(), on_chain.block_number)
    assert card["hospitals"] == [
        {"address": n.address, "approved_block": card["hospitals"][i]["approved_block"]}
        for i, n in enumerate(card_study.nodes)]
    assert all(isinstance(h["approved_block"], int) and h["approved_block"] > 0 for h in card["hospitals"])
    assert card["task"]["code_hash_matches"] is True
    assert card["task"]["code_hash_on_chain"] == "0x" + studies.study(card_study.study_id).task_code_hash.hex()
    assert card["privacy"]["differential_privacy"] is False
    assert card["privacy"]["epsilon_spent_on_chain"] == 0


@pytest.mark.slow
def test_the_synthetic_share_counts_the_records_the_catalog_marks_real(card_study: CardStudy) -> None:
    card = read_card(card_study.folder / CARD_JSON)
    alpha = card_study.nodes[0].address
    for r in card["rounds"]:
        reported = {c["hospital"]: c["synthetic_records_reported"] for c in r["contributions"]}
        assert reported[alpha] == RECORDS - REAL_AT_ALPHA
        assert r["synthetic_share"] == pytest.approx((2 * RECORDS - REAL_AT_ALPHA) / (2 * RECORDS))
    assert card["synthetic_data"]["share"] == pytest.approx((2 * RECORDS - REAL_AT_ALPHA) / (2 * RECORDS))
    flags = sorted((d["records"], d["synthetic"]) for d in card["synthetic_data"]["registered_datasets"])
    # Alpha's real and synthetic datasets, and Beta's (synthetic): every record trained on is registered.
    assert flags == [(REAL_AT_ALPHA, False), (RECORDS - REAL_AT_ALPHA, True), (RECORDS, True)]


@pytest.mark.slow
def test_the_markdown_states_the_jsons_figures(card_study: CardStudy) -> None:
    card = read_card(card_study.folder / CARD_JSON)
    text = (card_study.folder / CARD_MD).read_text()
    for r in card["rounds"]:
        assert f"| {r['round']} | {r['block']} | `{r['model_hash']}` | {r['held_out']['loss']:.4f} | " \
               f"{r['held_out']['accuracy']:.4f} |" in text
        for c in r["contributions"]:
            assert f"`{c['cohort_root']}`" in text
    assert f"`{card['model']['weights_hash']}`" in text
    assert "not the sha256 of the .npz file" in text
    assert "python -m coordinator.model_loader final.npz" in text
    assert "![training curves](training-curves.png)" in text
    section = card["robustness"]
    if section["available"]:
        assert section["table_markdown"].strip() in text
        assert (card_study.folder / section["heatmap_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert f"{NOT_AVAILABLE}." in text


@pytest.mark.slow
def test_the_training_curves_are_a_png(card_study: CardStudy) -> None:
    data = (card_study.folder / CURVES_PNG).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 320)


@pytest.mark.slow
def test_the_cards_loader_example_runs_and_the_hash_command_prints_the_chains_hash(
        card_study: CardStudy, repo_root: Path) -> None:
    card = read_card(card_study.folder / CARD_JSON)
    proc = subprocess.run([sys.executable, "-c", card["model"]["example"]],
                          cwd=card_study.folder, env={"PYTHONPATH": str(repo_root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert printed["accuracy"] == card["rounds"][-1]["held_out"]["accuracy"]
    assert printed["loss"] == pytest.approx(card["rounds"][-1]["held_out"]["loss"], rel=1e-6)
    command = card["model"]["hash_command"].split()
    assert command[:3] == ["python", "-m", "coordinator.model_loader"]
    proc = subprocess.run([sys.executable, *command[1:]], cwd=card_study.folder,
                          env={"PYTHONPATH": str(repo_root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"weights_hash {card['model']['weights_hash_on_chain']} (on chain)" in proc.stdout


def _copy(card_study: CardStudy, tmp_path: Path) -> tuple[Path, StudyLog]:
    folder = tmp_path / "study"
    shutil.copytree(card_study.folder, folder)
    return folder, read_study_log(folder)


@pytest.mark.slow
def test_a_final_model_that_is_not_the_anchored_one_gets_no_card(card_study: CardStudy, tmp_path: Path) -> None:
    from tasks import load_weights, save_weights

    folder, log = _copy(card_study, tmp_path)
    weights = load_weights(folder / "final.npz")
    weights[0] = weights[0] + 1e-3
    save_weights(folder / "final.npz", weights)
    with pytest.raises(ModelCardError, match=r"final\.npz: weights hash to 0x[0-9a-f]{64}, the chain's final model"):
        build_card(card_study.exchange, log, folder)


@pytest.mark.slow
def test_a_record_whose_round_hash_differs_from_the_chain_gets_no_card(card_study: CardStudy, tmp_path: Path) -> None:
    folder, log = _copy(card_study, tmp_path)
    log.rounds[0].model_hash = "0x" + "ab" * 32
    with pytest.raises(ModelCardError, match=r"round 1: the coordinator's record says model 0xabab.*the chain says"):
        build_card(card_study.exchange, log, folder)


@pytest.mark.slow
def test_an_impossible_synthetic_count_gets_no_card(card_study: CardStudy, tmp_path: Path) -> None:
    folder, log = _copy(card_study, tmp_path)
    hospital = card_study.nodes[1].address
    log.rounds[1].synthetic_counts[hospital] = RECORDS + 1
    with pytest.raises(ModelCardError, match=rf"round 2: hospital {hospital} reports {RECORDS + 1} synthetic records "
                                             rf"in a cohort of {RECORDS}"):
        build_card(card_study.exchange, log, folder)


@pytest.mark.slow
def test_a_resumed_runs_earlier_round_is_re_evaluated_from_its_saved_model(card_study: CardStudy,
                                                                           tmp_path: Path) -> None:
    folder, log = _copy(card_study, tmp_path)
    log.rounds = log.rounds[1:]  # what a run resumed after round 1 records
    card = build_card(card_study.exchange, log, folder)
    original = read_card(card_study.folder / CARD_JSON)["rounds"][0]
    first = card["rounds"][0]
    assert first["held_out_source"].startswith("re-evaluated from the saved round model")
    assert first["held_out"]["accuracy"] == original["held_out"]["accuracy"]
    assert first["held_out"]["loss"] == pytest.approx(original["held_out"]["loss"], rel=1e-6)
    assert first["synthetic_share"] is None
    assert card["synthetic_data"]["share"] is None
    assert card["rounds"][1]["held_out_source"] == "the coordinator's evaluation after the round"
