"""What a restarted service does with the launches it had left unfinished, against a real chain and SuperLink.

The launches are put on record the way a service that was then killed leaves them (claimed,
submitted, marked running) in a fresh database; :func:`resume_launches` runs as a service start
runs it. The SuperLink is a real ``flower-superlink`` (plain HTTP on loopback) whose ServerApps
read the session's chain with the coordinator's key; a run of a study that is RUNNING on chain
waits for SuperNodes there (none come), so it stays alive for the test. The whole restart of a
real service mid-study (its host killed with a round in flight) is in tests/multihost/test_consortium.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from flwr.supercore.error.base import ApiErrorCode

from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.studies import StudyRequest
from coordinator.core.db import Database, upgrade
from coordinator.federated.control import ControlClient, ControlError
from coordinator.federated.launch_records import LaunchInProgress, LaunchRecords
from coordinator.federated.launches import Launcher
from coordinator.federated.resume import Resumed, resume_launches
from coordinator.federated.superlink import APP_DIR, SuperLinkConnection
from coordinator.federated.superlink_runs import LinkRun, list_runs, log_lines, run_status, stop_link_run
from deploy.flower import SuperLinkProcess, start_superlink, stop
from deploy.process import free_port
from tasks import task_code_hash
from tests.chain_steps import contribute
from tests.conftest import Actors, light_keystore
from tests.coordinator.conftest import PASSPHRASE

TASK = "ct-sinogram-lesion-v1"
#: A run that waits this long for SuperNodes that never come: alive for the whole test.
WAITING = {"min-nodes": 2, "wait-nodes": 600.0, "local-epochs": 1}


@pytest.fixture(scope="module")
def superlink(tmp_path_factory: pytest.TempPathFactory, module_exchange: Exchange,
              actors: Actors) -> Iterator[SuperLinkProcess]:
    """A SuperLink whose ServerApps have the coordinator's settings (chain, key, a model folder)."""
    root = tmp_path_factory.mktemp("resume-superlink")
    write_manifest(module_exchange.deployment, root / "deployment.json")
    (root / "coordinator-key.json").write_text(light_keystore(actors.coordinator.key, PASSPHRASE))
    settings = {"RPC_URL": module_exchange.chain.rpc_url, "MANIFEST": str(root / "deployment.json"),
                "KEY_FILE": str(root / "coordinator-key.json"), "PASSPHRASE": PASSPHRASE,
                "MODEL_DIR": str(root / "models")}
    process = start_superlink(root / "superlink", extra_env={f"METAI_COORDINATOR_{k}": v for k, v in settings.items()})
    yield process
    stop(process)


@pytest.fixture
def control(superlink: SuperLinkProcess) -> Iterator[ControlClient]:
    """The SuperLink's Control API; every run still unfinished when the test ends is stopped (study ids repeat
    from test to test, since the chain is put back after each)."""
    with ControlClient(superlink.control_address, None) as client:
        yield client
        for run in list_runs(client):
            if not run.ended:
                stop_link_run(client, run.run_id)


def _launcher(folder: Path, connection: SuperLinkConnection | None, *, owns_superlink: bool = False) -> Launcher:
    """A start of the service: its database in ``folder`` (made on the first start), the SuperLink of
    ``connection``."""
    database = Database(f"sqlite:///{folder / 'coordinator.sqlite'}")
    upgrade(database.engine)
    return Launcher(LaunchRecords(database), connection=connection, flwr_home=folder / "flwr-home", app_dir=APP_DIR,
                    timeout=900, owns_superlink=owns_superlink)


def _connection(superlink: SuperLinkProcess) -> SuperLinkConnection:
    return SuperLinkConnection(superlink.control_address, None)


@pytest.fixture
def launcher(tmp_path: Path, superlink: SuperLinkProcess) -> Iterator[Launcher]:
    """A restarted service's launcher over an external SuperLink (one that kept running)."""
    made = _launcher(tmp_path, _connection(superlink))
    yield made
    made.close()
    made.records.db.close()


def _study(exchange: Exchange, actors: Actors, *, start: bool = True) -> int:
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=task_code_hash(TASK), rounds=2))
    for hospital in (actors.hospital, actors.hospital2):
        exchange.studies.approve(hospital, study_id)
    if start:
        exchange.studies.start(actors.coordinator, study_id)
    return int(study_id)


def _config(study_id: int) -> dict[str, Any]:
    return {**WAITING, "study-id": study_id, "task": TASK}


def _left_running(launcher: Launcher, study_id: int) -> int:
    """Launch the study's run from another start of the service on the same database and SuperLink, and leave it
    on record as ``running``, as that service, killed now, would."""
    before = _launcher(launcher.flwr_home.parent, launcher.connection, owns_superlink=launcher.owns_superlink)
    try:
        before.claim(study_id, _config(study_id))
        run_id = before.submit(study_id).run_id
    finally:
        before.close()  # a killed service follows nothing any more
        before.records.db.close()
    assert run_id is not None
    return run_id


def _runs_of(control: ControlClient, study_id: int) -> list[LinkRun]:
    return [run for run in list_runs(control) if run.study_id == study_id]


def _resumed(launcher: Launcher, exchange: Exchange, control: ControlClient,
             **options: Any) -> tuple[list[Resumed], list[int]]:
    """Resume as a service start does; return what was done and the runs submitted meanwhile (study ids repeat from
    test to test, so earlier tests' ended runs of the same id are on the SuperLink too)."""
    before = {run.run_id for run in list_runs(control)}
    done = resume_launches(launcher, exchange.studies, **options)
    return done, [run.run_id for run in list_runs(control) if run.run_id not in before]


def _wait_ended(control: ControlClient, run_id: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        run = next(r for r in list_runs(control) if r.run_id == run_id)
        if run.ended:
            return run.status
        assert time.monotonic() < deadline, f"run {run_id} is still {run.status}"
        time.sleep(0.5)


def _completed(exchange: Exchange, actors: Actors, study_id: int) -> None:
    """Anchor the study's two rounds and its completion, as its ServerApp would have while the service was down."""
    for round_ in (1, 2):
        for n, hospital in enumerate((actors.hospital, actors.hospital2)):
            contribute(exchange, hospital, study_id, round_, keccak(text=f"root {n}"), 10,
                       keccak(text=f"update {round_} {n}"))
        exchange.studies.record_round(actors.coordinator, study_id, round_, keccak(text=f"model {round_}"),
                                      sorted([actors.hospital.address, actors.hospital2.address]))
    exchange.studies.complete(actors.coordinator, study_id, keccak(text="model 2"), keccak(text="lineage bundle"))


def test_a_running_study_whose_run_died_gets_one_new_run_with_the_same_config(
        launcher: Launcher, control: ControlClient, exchange: Exchange, actors: Actors) -> None:
    study_id = _study(exchange, actors)
    earlier = _left_running(launcher, study_id)
    stop_link_run(control, earlier)  # its ServerApp is gone: Flower reports the run ended
    _wait_ended(control, earlier)

    [resumed], submitted = _resumed(launcher, exchange, control)

    assert (resumed.study_id, resumed.action, resumed.earlier_run_id) == (study_id, "submit", earlier)
    assert resumed.run_id not in (None, earlier)
    assert submitted == [resumed.run_id]
    assert [run.run_id for run in _runs_of(control, study_id) if not run.ended] == [resumed.run_id]
    launch = launcher.current(study_id)
    assert launch is not None
    assert (launch.state, launch.run_id, launch.resumed_from) == ("running", resumed.run_id, earlier)
    assert dict(launch.run_config) == _config(study_id)
    assert f"run {earlier} did not survive the restart; 0 of 2 rounds are anchored on chain" in resumed.detail


def test_a_run_still_alive_on_an_external_superlink_is_followed_not_doubled(
        launcher: Launcher, control: ControlClient, exchange: Exchange, actors: Actors) -> None:
    study_id = _study(exchange, actors)
    earlier = _left_running(launcher, study_id)

    [resumed], submitted = _resumed(launcher, exchange, control)

    assert (resumed.action, resumed.run_id, resumed.stopped) == ("follow", earlier, ())
    assert submitted == []
    assert [run.run_id for run in _runs_of(control, study_id) if not run.ended] == [earlier]
    launch = launcher.current(study_id)
    assert launch is not None
    assert (launch.state, launch.run_id, launch.resumed_from) == ("running", earlier, None)


def test_a_managed_superlinks_earlier_run_is_stopped_before_the_new_one_is_submitted(
        tmp_path: Path, superlink: SuperLinkProcess, control: ControlClient, exchange: Exchange,
        actors: Actors) -> None:
    """Flower still counts a run of a restarted SuperLink as alive for a while: the service stops it first."""
    launcher = _launcher(tmp_path, _connection(superlink), owns_superlink=True)
    try:
        study_id = _study(exchange, actors)
        earlier = _left_running(launcher, study_id)

        [resumed], submitted = _resumed(launcher, exchange, control)

        assert (resumed.action, resumed.stopped) == ("submit", (earlier,))
        assert _wait_ended(control, earlier) == "finished:stopped"
        assert submitted == [resumed.run_id]
        assert [run.run_id for run in _runs_of(control, study_id) if not run.ended] == [resumed.run_id]
    finally:
        launcher.close()
        launcher.records.db.close()


def test_a_study_completed_meanwhile_gets_no_new_run(launcher: Launcher, control: ControlClient,
                                                      exchange: Exchange, actors: Actors) -> None:
    study_id = _study(exchange, actors)
    earlier = _left_running(launcher, study_id)
    stop_link_run(control, earlier)
    _wait_ended(control, earlier)
    _completed(exchange, actors, study_id)

    [resumed], submitted = _resumed(launcher, exchange, control)

    assert (resumed.action, resumed.run_id) == ("finish", None)
    assert submitted == []
    launch = launcher.current(study_id)
    assert launch is not None
    assert (launch.state, launch.run_id, launch.status) == ("finished", earlier, "finished:stopped")
    assert launch.error == f"study {study_id} was completed on chain; run {earlier} ended finished:stopped"


def test_a_study_withdrawn_before_it_started_gets_no_run(launcher: Launcher, control: ControlClient,
                                                         exchange: Exchange, actors: Actors) -> None:
    """Killed between the claim and the start transaction; the researcher then withdrew the study."""
    study_id = _study(exchange, actors, start=False)
    launcher.claim(study_id, _config(study_id))
    exchange.studies.withdraw(actors.researcher, study_id)

    [resumed], submitted = _resumed(launcher, exchange, control)

    assert (resumed.action, resumed.run_id) == ("fail", None)
    assert submitted == []
    launch = launcher.current(study_id)
    assert launch is not None
    assert (launch.state, launch.error) == ("failed", f"study {study_id} is withdrawn on chain; it will not run")


def test_a_study_never_started_on_chain_is_left_to_the_operator(launcher: Launcher, control: ControlClient,
                                                               exchange: Exchange, actors: Actors) -> None:
    study_id = _study(exchange, actors, start=False)
    launcher.claim(study_id, _config(study_id))

    [resumed], submitted = _resumed(launcher, exchange, control)

    assert resumed.action == "fail"
    assert submitted == []
    launch = launcher.current(study_id)
    assert launch is not None
    assert launch.error == f"the service stopped before study {study_id} was started on chain; start it again"


def test_one_study_that_cannot_be_resumed_does_not_stop_the_others(launcher: Launcher, control: ControlClient,
                                                                   exchange: Exchange, actors: Actors) -> None:
    study_id = _study(exchange, actors)
    unknown = study_id + 1000  # a launch of a study the chain does not hold (e.g. a database of another chain)
    launcher.claim(unknown, _config(unknown))
    launcher.claim(study_id, _config(study_id))

    resumed, submitted = _resumed(launcher, exchange, control)

    assert [(r.study_id, r.action) for r in resumed] == [(study_id, "submit"), (unknown, "error")]
    failed = launcher.current(unknown)
    assert failed is not None
    assert failed.state == "failed"
    assert failed.error is not None
    assert "StudyRegistryUnknownStudy" in failed.error
    assert submitted == [resumed[0].run_id]


def test_an_unreachable_superlink_fails_each_launch_and_starts_nothing(tmp_path: Path, superlink: SuperLinkProcess,
                                                                      exchange: Exchange, actors: Actors) -> None:
    launcher = _launcher(tmp_path, SuperLinkConnection(f"127.0.0.1:{free_port()}", None))
    try:
        study_id = _study(exchange, actors)
        launcher.claim(study_id, _config(study_id))

        [resumed] = resume_launches(launcher, exchange.studies, list_tries=1)

        assert resumed.action == "error"
        launch = launcher.current(study_id)
        assert launch is not None
        assert launch.state == "failed"
        assert launch.error is not None
        assert launch.error.startswith(f"resuming study {study_id} after the restart failed: cannot tell which runs "
                                       "the SuperLink still runs (the SuperLink's Control API at")
    finally:
        launcher.close()
        launcher.records.db.close()


def test_a_resumed_study_stays_claimed(launcher: Launcher, control: ControlClient, exchange: Exchange,
                                       actors: Actors) -> None:
    study_id = _study(exchange, actors)
    _left_running(launcher, study_id)
    _resumed(launcher, exchange, control)

    with pytest.raises(LaunchInProgress, match=f"study {study_id} already has a run running"):
        launcher.claim(study_id, _config(study_id))


def test_a_run_the_superlink_does_not_know_has_no_log_and_no_status(control: ControlClient) -> None:
    """What following a run reads, asked of a real SuperLink for a run it never had: a refusal, not an empty log."""
    unknown = max((run.run_id for run in list_runs(control)), default=0) + 12345
    with pytest.raises(ControlError) as no_log:
        list(log_lines(control, unknown))
    assert no_log.value.code == ApiErrorCode.RUN_ID_NOT_FOUND
    with pytest.raises(ControlError) as no_status:
        run_status(control, unknown)
    assert no_status.value.code == ApiErrorCode.RUN_ID_NOT_FOUND
