"""The exchange across machines: a chain host, a coordinator host and three hospital hosts (network namespaces).

One consortium is built for the module (tests/multihost/consortium.py); its studies run one after the
other, as in a deployment:

- a three-hospital study with a revocation between rounds 1 and 2 runs to completion, and the chain
  holds what the single-host end-to-end test checks (each cohort's count and root, the revoked
  patient only before the revocation, every round's model hash equal to the saved model's);
- a hospital whose host loses power in a round leaves the study going (min-nodes 2), the chain shows
  who contributed, and once restarted it contributes to a later round;
- the coordinator's host losing power while a round is in flight (two hospitals have anchored their
  updates to it, the third hangs), and starting again, resumes the study from the chain: the round is
  asked again, the two answer with the replies they kept (no second transaction), and every round
  ends with all three contributions;
- no hospital host reaches another's node services, and every service listens only on its own host.
"""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.datause import Purpose, Scope
from contracts.events import RoundRecorded, read_events
from contracts.studies import StudyRequest, StudyStatus
from coordinator.study_log import read_study_log
from deploy.netns import available, sweep
from node.cohort import build_cohort
from node.kept_cohort import read_kept_cohort
from tests.federated.conftest import STUDY_CONFIG, TASK
from tests.multihost.consortium import HEALTH_PORT, SUPERNODE_PORT, Consortium, HospitalHost, consortium

pytestmark = [pytest.mark.slow, pytest.mark.skipif(available() is not None, reason=str(available()))]
WAIT = 900.0


@pytest.fixture(scope="module")
def lab_consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    sweep()  # namespaces of a lab whose test process was killed
    with consortium(tmp_path_factory.mktemp("consortium")) as made:
        yield made


@pytest.fixture(autouse=True)
def every_host_up(lab_consortium: Consortium) -> None:
    """Each test starts with every host running, whatever a failed test before it left hung or killed."""
    c = lab_consortium
    for host in c.lab.hosts:
        c.signal_host(host, signal.SIGCONT)
    if c.coordinator_proc is None or c.coordinator_proc.poll() is not None:
        c.start_coordinator()
    for h in c.hospitals:
        if h.proc is None or h.proc.poll() is not None:
            c.start_hospital(h)


def _study(c: Consortium, rounds: int) -> int:
    from contracts.datause import Kind
    from tasks import task_code_hash

    study_id, _ = c.exchange.studies.request(c.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in c.hospitals),
        task_code_hash=task_code_hash(TASK), rounds=rounds))
    for h in c.hospitals:
        c.exchange.studies.approve(h.node.account, study_id)
    return int(study_id)


def _start(c: Consortium, study_id: int, **run_config: object) -> dict[str, Any]:
    operator = c.sign_in(c.coordinator)
    config = {key: value for key, value in {**STUDY_CONFIG, **run_config}.items() if key != "task"}
    launched = httpx.post(f"{c.api}/v1/studies/{study_id}/start", headers=operator, json={"run_config": config},
                          timeout=180)
    assert launched.status_code == 202, launched.text
    return dict(launched.json())


def _wait_round(c: Consortium, study_id: int, round_: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while c.exchange.studies.round_model_hash(study_id, round_) == bytes(32):
        assert time.monotonic() < deadline, f"round {round_} of study {study_id} not anchored in {timeout} s"
        time.sleep(0.5)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_contributed(c: Consortium, study_id: int, round_: int, hospitals: Sequence[HospitalHost],
                      timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while any(c.exchange.studies.contribution_of(study_id, round_, h.node.address) is None for h in hospitals):
        assert time.monotonic() < deadline, f"round {round_} lacks contributions of {[h.host for h in hospitals]}"
        time.sleep(0.2)


def _wait_completed(c: Consortium, study_id: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while c.exchange.studies.study(study_id).status != StudyStatus.COMPLETED:
        assert time.monotonic() < deadline, f"study {study_id} did not complete in {timeout} s"
        time.sleep(1.0)


def test_a_study_with_a_revocation_runs_to_completion_across_hosts(lab_consortium: Consortium) -> None:
    c = lab_consortium
    study_id = _study(c, rounds=3)
    first = c.hospitals[0]
    revoked_key = next(iter(first.patients.values()))
    revoked_at: list[int] = []

    def revoke_after_round_one() -> None:  # a thread started here works inside the coordinator host too
        _wait_round(c, study_id, 1)
        revoked_at.append(c.exchange.consent.relay(c.relayer, c.exchange.consent.sign_revoke(
            revoked_key, Scope(purpose=Purpose.GRU))).block_number)

    watcher = threading.Thread(target=revoke_after_round_one, daemon=True)
    signer_logs = [h.node.dir / "logs" / "signer.log" for h in c.hospitals]
    signed_before = [p.stat().st_size if p.exists() else 0 for p in signer_logs]
    watcher.start()
    launch = _start(c, study_id, **{"round-delay": 4.0})
    assert (launch["state"], launch["run_id"].isdigit()) == ("running", True), launch
    operator = c.sign_in(c.coordinator)
    again = httpx.post(f"{c.api}/v1/studies/{study_id}/start", headers=operator, timeout=60)
    assert again.status_code == 409, again.text
    assert (again.json()["type"], again.json()["run_id"]) == ("urn:metai:problem:run-in-progress", launch["run_id"])
    _wait_completed(c, study_id)
    watcher.join(timeout=30)
    assert revoked_at, "the revocation was never sent"

    record = c.exchange.studies.study(study_id)
    assert record.rounds_completed == 3
    from tasks import load_weights, weights_hash

    for round_ in (1, 2, 3):
        for h in c.hospitals:
            on_chain = c.exchange.studies.contribution_of(study_id, round_, h.node.address)
            assert on_chain.cohort_count == (11 if h is first and round_ > 1 else 12), (round_, h.host)
            kept = read_kept_cohort(h.node.dir, study_id, round_)
            assert build_cohort(h.node, study_id, kept.block).root == on_chain.cohort_root
            assert kept.root == "0x" + on_chain.cohort_root.hex()
            patients = {m.patient for m in kept.members}
            assert (revoked_key.address in patients) == (h is first and round_ == 1), (round_, h.host)
        saved = load_weights(c.models / f"study-{study_id}" / f"round-{round_}.npz")
        assert weights_hash(saved) == c.exchange.studies.round_model_hash(study_id, round_)
    assert weights_hash(load_weights(c.models / f"study-{study_id}" / "final.npz")) == record.final_model_hash

    # What the operator and the researcher see through the service: the run ended, and the study's view is
    # the chain's record (the study is completed on chain a moment before its run ends).
    deadline = time.monotonic() + 120
    while (run := httpx.get(f"{c.api}/v1/studies/{study_id}/run", headers=operator, timeout=30).json())["state"] \
            == "running":
        assert time.monotonic() < deadline, f"the run did not end: {run}"
        time.sleep(1.0)
    assert (run["state"], run["status"], run["run_id"]) == ("finished", "finished:completed", launch["run_id"]), run
    view = httpx.get(f"{c.api}/v1/studies/{study_id}", headers=c.sign_in(c.researcher), timeout=30).json()
    assert (view["status"], view["rounds_completed"]) == ("completed", 3), view
    assert [r["round"] for r in view["round_records"]] == [1, 2, 3]
    for r in view["round_records"]:
        assert sorted(x["hospital"] for x in r["contributions"]) == sorted(h.node.address for h in c.hospitals)
        assert r["model_hash"] == "0x" + c.exchange.studies.round_model_hash(study_id, r["round"]).hex()
        assert r["metrics"] is not None, r
    assert view["final_model_hash"] == "0x" + record.final_model_hash.hex()

    # Each hospital's serve kept its SuperNode and signing agent up the whole study, and every contribution
    # was a transaction its signing agent signed: from the hospital, to the StudyRegistry, one per round.
    for h, log, start in zip(c.hospitals, signer_logs, signed_before, strict=True):
        status, body = c.health(h)
        assert status == 200, body
        assert (body["children"]["supernode"]["restarts"], body["children"]["signer"]["restarts"]) == (0, 0), body
        with log.open("rb") as f:
            f.seek(start)
            written = f.read().decode(errors="replace")
        signed = re.findall(r"signed a contribution: transaction (0x[0-9a-f]{64})", written)
        assert len(signed) == 3, (h.host, written)
        for tx_hash in signed:
            tx = c.exchange.chain.w3.eth.get_transaction(tx_hash)
            assert (tx["from"], tx["to"]) == (h.node.address, c.exchange.studies.address), h.host
        assert "refused" not in written, (h.host, written)


def test_a_hospital_loses_power_mid_round_and_rejoins_a_later_one(lab_consortium: Consortium) -> None:
    c = lab_consortium
    study_id = _study(c, rounds=4)
    third = c.hospitals[2]
    # The pause between rounds outlasts the hospital's restart (12 s measured on a busy machine): rounds
    # of this size take about 7 s, and with a short pause rounds 3 and 4 were over before it was back.
    _start(c, study_id, **{"round-delay": 15.0})

    # The third host hangs in the pause after round 1, so it cannot reply to round 2 whatever the machine's
    # speed; once the other two have anchored round 2 (the round is under way), its power goes.
    _wait_round(c, study_id, 1)
    assert c.signal_host(third.host, signal.SIGSTOP), "nothing ran on the third hospital's host"
    _wait_contributed(c, study_id, 2, c.hospitals[:2])
    assert c.kill_host(third.host), "nothing ran on the third hospital's host"
    _wait_round(c, study_id, 2)
    assert c.exchange.studies.contribution_of(study_id, 2, third.node.address) is None
    for h in c.hospitals[:2]:
        assert c.exchange.studies.contribution_of(study_id, 2, h.node.address) is not None
    c.start_hospital(third)  # the hospital's IT restarts it
    _wait_completed(c, study_id)

    assert c.exchange.studies.study(study_id).rounds_completed == 4
    later = [r for r in (3, 4) if c.exchange.studies.contribution_of(study_id, r, third.node.address) is not None]
    assert later, "the restarted hospital contributed to no later round"
    for round_ in (1, 2, 3, 4):
        assert sum(c.exchange.studies.contribution_of(study_id, round_, h.node.address) is not None
                   for h in c.hospitals) >= 2, round_


def test_the_coordinator_loses_power_mid_round_and_the_study_resumes_with_every_contribution(
        lab_consortium: Consortium) -> None:
    c = lab_consortium
    study_id = _study(c, rounds=3)
    _start(c, study_id, **{"round-delay": 8.0})
    operator = c.sign_in(c.coordinator)
    first_run = httpx.get(f"{c.api}/v1/studies/{study_id}/run", headers=operator).json()["run_id"]
    early, late = c.hospitals[:2], c.hospitals[2]

    # Round 2 in flight: two hospitals have anchored their updates, the third hangs before replying.
    _wait_round(c, study_id, 1)  # then the ServerApp pauses 8 s before round 2
    assert c.signal_host(late.host, signal.SIGSTOP)
    try:
        _wait_contributed(c, study_id, 2, early)
        assert c.kill_host("coord")
    finally:
        c.signal_host(late.host, signal.SIGCONT)
    assert c.exchange.studies.round_model_hash(study_id, 2) == bytes(32)  # killed with round 2 in flight
    assert c.exchange.studies.contribution_of(study_id, 2, late.node.address) is None
    anchored = {h.host: c.exchange.studies.contribution_of(study_id, 2, h.node.address) for h in early}
    sent = {h.host: c.exchange.chain.w3.eth.get_transaction_count(h.node.address) for h in early}
    study_dir = c.models / f"study-{study_id}"
    round_1 = read_study_log(study_dir).rounds[0]
    round_1_files = {path: _sha256(path) for path in (study_dir / "round-1.npz",
                                                      study_dir / "lineage" / "rounds" / "1" / "model.npz")}
    c.start_coordinator()  # the same database, SuperLink folder, ports and model folder
    _wait_completed(c, study_id)

    from tasks import load_weights, weights_hash

    assert c.exchange.studies.study(study_id).rounds_completed == 3
    operator = c.sign_in(c.coordinator)
    deadline = time.monotonic() + 120
    while (run := httpx.get(f"{c.api}/v1/studies/{study_id}/run", headers=operator).json())["state"] != "finished":
        assert time.monotonic() < deadline, run
        time.sleep(1.0)
    assert (run["status"], run["error"], run["resumed_from_run_id"]) == ("finished:completed", None, first_run), run
    assert run["run_id"] != first_run
    assert (f"study {study_id}: resumed after the restart: run {first_run} did not survive the restart; 1 of 3 "
            "rounds are anchored on chain, 2 to run") in (c.root / "coordinator.log").read_text()
    # The resumed run trained rounds 2 and 3 only; what round 1 left (models, study log) is untouched.
    resumed_log = (c.root / "coordinator" / "flwr-home" / "runs" / f"{run['run_id']}.log").read_text()
    assert re.findall(rf"study {study_id} round (\d+):", resumed_log) == ["2", "3"]
    assert {path: _sha256(path) for path in round_1_files} == round_1_files
    log = read_study_log(study_dir)
    assert [r.round for r in log.rounds] == [1, 2, 3]
    assert log.rounds[0] == round_1
    recorded = [e for e in read_events(c.exchange.chain, [c.exchange.studies.address])
                if isinstance(e, RoundRecorded) and e.study_id == study_id]
    assert [e.round for e in recorded] == [1, 2, 3]
    for round_ in (1, 2, 3):
        for h in c.hospitals:
            assert c.exchange.studies.contribution_of(study_id, round_, h.node.address) is not None, (round_, h.host)
        saved = load_weights(c.models / f"study-{study_id}" / f"round-{round_}.npz")
        assert weights_hash(saved) == c.exchange.studies.round_model_hash(study_id, round_)
    for h in early:  # round 2 again was the kept reply: the same update, and one transaction since (round 3)
        assert c.exchange.studies.contribution_of(study_id, 2, h.node.address) == anchored[h.host]
        assert c.exchange.chain.w3.eth.get_transaction_count(h.node.address) == sent[h.host] + 1
    health = {h.host: c.wait_hospital(h) for h in c.hospitals}  # the hospitals reconnected by themselves
    assert all(body["children"]["supernode"]["node_id"] for body in health.values())


def test_hospital_hosts_cannot_reach_each_others_node_services(lab_consortium: Consortium) -> None:
    c = lab_consortium
    one, other = c.hospitals[0], c.hospitals[1]
    assert c.health(one)[0] == 200  # it runs, on its own host's loopback
    with c.lab.inside(other.host):
        for port in (SUPERNODE_PORT, HEALTH_PORT):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((c.lab[one.host].address, port), timeout=5)


def test_every_service_listens_only_on_its_own_host(lab_consortium: Consortium) -> None:
    c = lab_consortium
    for name, host in c.lab.hosts.items():
        listening = c.lab.listening(name)
        assert listening, name
        addresses = {address for address, _ in listening}
        assert addresses <= {host.address, "127.0.0.1"}, (name, listening)
    assert {port for address, port in c.lab.listening("coord") if address != "127.0.0.1"} == {8000, 9092}
    assert {address for address, _ in c.lab.listening("h1")} == {"127.0.0.1"}


def test_the_gateway_is_the_only_way_in_and_verifies_as_the_coordinator(lab_consortium: Consortium,
                                                                         tmp_path: Path) -> None:
    c = lab_consortium
    ca = str(c.root / "certs" / "ca" / "ca.pem")
    with c.lab.inside(c.hospitals[0].host):
        assert httpx.get(f"https://{c.fleet}/health", verify=ca, timeout=10).status_code == 200
        assert httpx.post(f"https://{c.fleet}/v1/control/list-runs", verify=ca, timeout=10).status_code == 404
        with pytest.raises(httpx.ConnectError):  # the SuperLink's own port is on the coordinator's loopback
            httpx.get(f"https://{c.lab['coord'].address}:9093/health", verify=False, timeout=5)
