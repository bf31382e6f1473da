"""The launches on record in the service's database, on SQLite and PostgreSQL: what a restart finds there.

Each "start of the service" here is a new :class:`Database` on the same URL, as a restarted
process opens it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from coordinator.core.db import Database, upgrade
from coordinator.federated.launch_records import LaunchInProgress, LaunchRecords

#: A Flower run id above 2^63: it does not fit a signed 64-bit column.
BIG_RUN = 2**64 - 5
CONFIG = {"study-id": 7, "task": "ct-sinogram-lesion-v1", "local-epochs": 2, "lr": 0.05, "anchor": True,
          "note": "a 'quoted' value"}


@pytest.fixture
def start(database_url: str) -> Iterator[Callable[[], LaunchRecords]]:
    """Start the service again and again on one database: each call a new connection pool (a new process)."""
    opened: list[Database] = []

    def make() -> LaunchRecords:
        database = Database(database_url)
        upgrade(database.engine)
        opened.append(database)
        return LaunchRecords(database)

    yield make
    for database in opened:
        database.close()


def test_a_launch_survives_a_restart_with_its_run_config_and_times(start: Callable[[], LaunchRecords]) -> None:
    first = start()
    claimed = first.claim(7, CONFIG)
    first.update(7, state="running", run_id=BIG_RUN)
    first.db.close()

    again = start().get(7)

    assert again is not None
    assert (again.state, again.run_id, again.run_config) == ("running", BIG_RUN, CONFIG)
    assert again.started_at == claimed.started_at
    assert again.started_at.tzinfo == UTC
    assert start().unfinished() == [again]


def test_a_study_with_a_launch_under_way_cannot_be_claimed_from_another_process(
        start: Callable[[], LaunchRecords]) -> None:
    start().claim(7, CONFIG)
    other = start()
    with pytest.raises(LaunchInProgress, match="study 7 already has a run launching; one run per study at a time"):
        other.claim(7, CONFIG)


def test_an_ended_launch_is_replaced_by_the_next_claim(start: Callable[[], LaunchRecords]) -> None:
    records = start()
    records.claim(7, CONFIG)
    records.update(7, state="failed", run_id=BIG_RUN, error="the SuperLink refused the run",
                   ended_at=datetime.now(UTC))

    claimed = records.claim(7, {**CONFIG, "local-epochs": 3})

    assert (claimed.state, claimed.run_id, claimed.error, claimed.ended_at) == ("launching", None, None, None)
    assert records.get(7) == claimed
    assert records.unfinished() == [claimed]


def test_a_follower_of_an_earlier_run_does_not_overwrite_the_resumed_launch(
        start: Callable[[], LaunchRecords]) -> None:
    records = start()
    records.claim(7, CONFIG)
    records.update(7, state="running", run_id=11)
    records.update(7, run_id=12, resumed_from=11, resumed_at=datetime.now(UTC))

    stale = records.update(7, run_id_was=11, state="finished", status="finished:failed")

    assert stale is None
    launch = records.get(7)
    assert launch is not None
    assert (launch.state, launch.run_id, launch.resumed_from, launch.status) == ("running", 12, 11, None)


def test_a_field_a_launch_does_not_have_is_refused(start: Callable[[], LaunchRecords]) -> None:
    records = start()
    records.claim(7, CONFIG)
    with pytest.raises(TypeError, match="a launch's 'run_config' cannot be changed"):
        records.update(7, run_config="{}")
