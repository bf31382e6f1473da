"""A chain started with a state file answers questions "as of" its earlier blocks after a restart."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.errors import StateUnavailable
from contracts.exchange import Exchange
from contracts.manifest import Deployment
from contracts.roles import Role
from deploy.anvil import AnvilNode, mine, rpc, start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from deploy.errors import StateFileUnreadable


@dataclass(frozen=True)
class History:
    """What the chain answered, before any restart, about each block of a consent history."""

    deployment: Deployment
    patients: tuple[str, ...]
    uses: tuple[Use, ...]
    blocks: range  # the blocks whose answers were recorded
    answers: dict[int, list[Any]]  # block -> [permits of each patient for each use, then permitsBatch per use]
    logs: list[dict[str, Any]]  # eth_getLogs over the whole chain
    hashes: list[str]  # eth_getBlockByNumber(n).hash for n = 0 .. the last block


def _answers(ex: Exchange, patients: tuple[str, ...], uses: tuple[Use, ...], block: int) -> list[Any]:
    single = [ex.consent.permits(p, use, block=block) for use in uses for p in patients]
    return single + [ex.consent.permits_batch(list(patients), use, block=block) for use in uses]


def _chain_record(url: str, head: int) -> tuple[list[dict[str, Any]], list[str]]:
    logs = rpc(url, "eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(head)}])
    hashes = [rpc(url, "eth_getBlockByNumber", [hex(n), False])["hash"] for n in range(head + 1)]
    return logs, hashes


def make_history(node: AnvilNode) -> History:
    """Deploy the contracts, then grant and revoke consents one block at a time, recording every answer."""
    chain = Chain(node.rpc_url)
    admin, hospital = Account.from_key(node.dev_keys[0]), Account.from_key(node.dev_keys[1])
    deployment = deploy_contracts(chain, admin, initial_roles=[(Role.HOSPITAL, hospital.address)])
    ex = Exchange(chain, deployment)
    patients: list[LocalAccount] = [Account.create() for _ in range(3)]
    for patient in patients:
        chain.send_value(admin, patient.address, 10**18)
    first = chain.block_number
    hmb, gru, ds = Scope(purpose=Purpose.HMB), Scope(purpose=Purpose.GRU), Scope(purpose=Purpose.DS, disease=7)
    ex.consent.grant(patients[0], hmb, Kind.CT_SINOGRAM, NO_EXPIRY)
    ex.consent.grant(patients[1], gru, Kind.CT_SINOGRAM | Kind.IMAGE, NO_EXPIRY)
    ex.consent.revoke(patients[0], hmb)
    ex.consent.grant(patients[2], ds, Kind.IMAGE, NO_EXPIRY)
    ex.consent.revoke(patients[1], gru)
    ex.consent.grant(patients[0], gru, Kind.CT_SINOGRAM, NO_EXPIRY)
    head = chain.block_number
    uses = (
        Use(hospital=hospital.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.HMB),
        Use(hospital=hospital.address, kinds=Kind.IMAGE, purpose=Purpose.DS, disease=7),
    )
    addresses = tuple(p.address for p in patients)
    blocks = range(first, head + 1)
    answers = {b: _answers(ex, addresses, uses, b) for b in blocks}
    assert len({repr(a) for a in answers.values()}) == 7  # every grant and revoke changed an answer
    logs, hashes = _chain_record(node.rpc_url, head)
    return History(deployment, addresses, uses, blocks, answers, logs, hashes)


def assert_same_history(node: AnvilNode, history: History) -> None:
    """Every recorded block answers as before, and the logs and blocks are the same."""
    ex = Exchange(Chain(node.rpc_url), history.deployment)
    head = history.blocks[-1]
    assert ex.chain.block_number == head
    assert {b: _answers(ex, history.patients, history.uses, b) for b in history.blocks} == history.answers
    assert _chain_record(node.rpc_url, head) == (history.logs, history.hashes)


def kill(node: AnvilNode) -> None:
    """SIGKILL ``node``: it saves nothing on the way out."""
    os.kill(node.pid, signal.SIGKILL)
    stop_anvil(node)  # waits for it to be gone


@pytest.fixture
def run(tmp_path: Path) -> Iterator[dict[str, AnvilNode]]:
    """Anvils a test starts, by name; whatever still runs at the end is stopped."""
    nodes: dict[str, AnvilNode] = {}
    yield nodes
    for node in nodes.values():
        stop_anvil(node)


def test_every_earlier_block_answers_as_before_after_a_restart(tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    history = make_history(run["first"])
    stop_anvil(run["first"])  # SIGTERM: Anvil saves its state

    run["second"] = start_anvil(tmp_path / "run", state_file=state)
    assert_same_history(run["second"], history)


def wait_until_saved(state: Path, head: int, timeout: float = 30.0) -> None:
    """Wait until Anvil's periodic save of ``state`` holds block ``head``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # not written yet, or caught mid-save
            if json.loads(state.read_text(encoding="utf-8"))["best_block_number"] == head:
                return
        time.sleep(0.1)
    raise AssertionError(f"no save of {state} held block {head} within {timeout} s")


def test_a_sigkill_after_a_periodic_save_loses_nothing(tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state, save_interval=1)
    history = make_history(run["first"])
    wait_until_saved(state, history.blocks[-1])
    kill(run["first"])

    run["second"] = start_anvil(tmp_path / "run", state_file=state)
    assert_same_history(run["second"], history)


def test_a_sigkill_loses_the_blocks_mined_since_the_last_save(tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    history = make_history(run["first"])
    stop_anvil(run["first"])
    run["second"] = start_anvil(tmp_path / "run", state_file=state, save_interval=3600)  # no save before the kill
    mine(run["second"].rpc_url, 5)
    kill(run["second"])

    run["third"] = start_anvil(tmp_path / "run", state_file=state)
    assert_same_history(run["third"], history)  # back at the last save: the five blocks are gone


def test_a_save_torn_by_a_kill_falls_back_to_the_state_the_chain_last_started_from(
    tmp_path: Path, run: dict[str, AnvilNode], caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    history = make_history(run["first"])
    stop_anvil(run["first"])
    run["second"] = start_anvil(tmp_path / "run", state_file=state)
    mine(run["second"].rpc_url, 5)
    stop_anvil(run["second"])
    saved = state.read_bytes()
    state.write_bytes(saved[: len(saved) // 2])  # what a SIGKILL in the middle of a save leaves

    with caplog.at_level(logging.WARNING, logger="metai.deploy.anvil"):
        run["third"] = start_anvil(tmp_path / "run", state_file=state)
    assert_same_history(run["third"], history)
    assert "state.json.prev, the state the chain last started from" in caplog.text


def test_a_torn_state_file_without_an_earlier_one_is_refused(tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    mine(run["first"].rpc_url, 3)
    stop_anvil(run["first"])
    torn = state.read_bytes()[:100]
    state.write_bytes(torn)

    with pytest.raises(StateFileUnreadable, match=r"(?s)state.json \(100 bytes\): it is cut short.*no state.json.prev"):
        start_anvil(tmp_path / "run", state_file=state)
    assert state.read_bytes() == torn  # left for the operator to move away


def test_a_new_chain_never_falls_back_to_an_older_one(tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    state = tmp_path / "state.json"
    (tmp_path / "state.json.prev").write_text("{}", encoding="utf-8")  # left by a chain whose state was deleted
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    assert not (tmp_path / "state.json.prev").exists()


def test_past_the_kept_window_the_event_replay_gives_the_answers_the_chain_gave(
        tmp_path: Path, run: dict[str, AnvilNode]) -> None:
    """Restarted keeping 3 past states, the oldest blocks no longer answer eth_call; metai-audit's replay of
    the consent events, read from the restarted chain, answers every block as the chain did before the restart,
    and agrees with eth_call on the blocks the chain still keeps."""
    import audit
    from contracts.manifest import write_manifest

    state = tmp_path / "state.json"
    run["first"] = start_anvil(tmp_path / "run", state_file=state)
    history = make_history(run["first"])
    stop_anvil(run["first"])
    run["second"] = start_anvil(tmp_path / "run", state_file=state, history_states=3)
    manifest = tmp_path / "deployment.json"
    write_manifest(history.deployment, manifest)
    deployment = audit.read_manifest(manifest)
    reader = audit.connect(run["second"].rpc_url, deployment)
    replay = audit.read_consent_history(reader, deployment, audit.read_artifacts())
    ex = Exchange(Chain(run["second"].rpc_url), history.deployment)
    gone = kept = 0
    for block in history.blocks:
        at = reader.instant(block)
        replayed = [replay.permits(p, audit.Use(hospital=u.hospital, kinds=int(u.kinds), purpose=int(u.purpose),
                                                disease=u.disease, study_id=u.study_id), at)
                    for u in history.uses for p in history.patients]
        assert replayed == history.answers[block][:len(replayed)], block
        try:
            now = _answers(ex, history.patients, history.uses, block)
        except StateUnavailable:
            gone += 1
            continue
        kept += 1
        assert now[:len(replayed)] == replayed, block
    assert gone > 0  # the window is smaller than the history: the replay answered blocks the chain no longer can
    assert kept > 0
