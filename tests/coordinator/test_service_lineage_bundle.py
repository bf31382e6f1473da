"""A completed study's lineage bundle through the API (``GET /v1/studies/{id}/lineage/bundle``): a tar of
bundle.json and the files it lists, byte for byte as the coordinator wrote them, for the coordinator
and the admin only, and only once the study is completed and its index is the anchored one."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from coordinator import federation
from coordinator.lineage import bundle_folder
from coordinator.study_log import study_folder
from tests.conftest import Actors
from tests.coordinator.conftest import Harness
from tests.coordinator.lineage_runs import Run, load_json, run, start_study


@pytest.fixture
def done(service: Harness, actors: Actors, monkeypatch: pytest.MonkeyPatch) -> Run:
    """A two-round study run to completion into the service's model directory (no model card)."""
    monkeypatch.setattr(federation, "_write_card", lambda *args, **kwargs: None)
    study_id, cfg = start_study(service.exchange, actors, dp=False)
    return run(service.exchange, actors, service.settings.model_dir, study_id, cfg)


def _path(study_id: int) -> str:
    return f"/v1/studies/{study_id}/lineage/bundle"


@pytest.mark.parametrize("who", ["coordinator", "admin"])
def test_the_bundle_downloads_as_a_tar_of_the_index_and_every_file_it_lists(service: Harness, actors: Actors,
                                                                            done: Run, who: str) -> None:
    response = service.client.get(_path(done.study_id), headers=service.bearer(getattr(actors, who)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert response.headers["content-disposition"] == f'attachment; filename="study-{done.study_id}-lineage.tar"'
    anchored = service.exchange.studies.study(done.study_id).lineage_hash
    assert response.headers["x-lineage-hash"] == "0x" + anchored.hex()
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    root = f"study-{done.study_id}-lineage/"
    index = load_json(done.bundle / "bundle.json")
    assert sorted(got) == sorted(root + name for name in ["bundle.json", *index["files"]])
    assert {name: got[root + name] for name in index["files"]} == {
        name: (done.bundle / name).read_bytes() for name in index["files"]}
    assert keccak(got[root + "bundle.json"]) == anchored


def test_the_study_view_shows_the_anchored_lineage_hash(service: Harness, actors: Actors, done: Run) -> None:
    view = service.client.get(f"/v1/studies/{done.study_id}", headers=service.bearer(actors.researcher)).json()
    assert view["lineage_hash"] == "0x" + keccak((done.bundle / "bundle.json").read_bytes()).hex()


def test_before_completion_the_bundle_is_refused_saying_the_study_is_running(service: Harness,
                                                                             actors: Actors) -> None:
    study_id, _ = start_study(service.exchange, actors, dp=False)
    refused = service.client.get(_path(study_id), headers=service.bearer(actors.coordinator))
    assert refused.status_code == 409
    body = refused.json()
    assert (body["type"], body["study_status"]) == ("urn:metai:problem:not-completed", "running")
    assert refused.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("who", "status", "problem"), [
    ("researcher", 403, "auditor-only"),  # the hospitals' updates and the patients' addresses are not theirs
    ("hospital", 403, "auditor-only"),
    ("stranger", 404, "not-found"),  # no part in the study: as if it did not exist
])
def test_the_bundle_is_refused_to_others(service: Harness, actors: Actors, done: Run, who: str, status: int,
                                         problem: str) -> None:
    refused = service.client.get(_path(done.study_id), headers=service.bearer(getattr(actors, who)))
    assert refused.status_code == status
    assert refused.json()["type"] == f"urn:metai:problem:{problem}"


def _break(bundle: Path, how: str) -> None:
    if how == "index-changed":
        index = (bundle / "bundle.json").read_bytes()
        (bundle / "bundle.json").write_bytes(index.replace(b'"rounds":2', b'"rounds":1'))
    else:
        (bundle / "rounds/1/model.npz").unlink()


@pytest.mark.parametrize(("how", "status", "problem", "detail"), [
    ("index-changed", 409, "lineage-mismatch", r"bundle\.json hashes to 0x[0-9a-f]{64}, the chain anchors 0x"),
    ("file-lost", 404, "lineage-incomplete", r"rounds/1/model\.npz is missing; the index lists it"),
])
def test_a_bundle_that_is_not_the_anchored_one_or_lacks_a_file_is_not_served(
        service: Harness, actors: Actors, done: Run, how: str, status: int, problem: str, detail: str) -> None:
    _break(done.bundle, how)
    refused = service.client.get(_path(done.study_id), headers=service.bearer(actors.coordinator))
    assert refused.status_code == status
    assert refused.json()["type"] == f"urn:metai:problem:{problem}"
    assert re.search(detail, refused.json()["detail"])


def test_a_completed_study_without_a_bundle_is_refused_saying_so(service: Harness, actors: Actors,
                                                                 done: Run) -> None:
    (bundle_folder(study_folder(service.settings.model_dir, done.study_id)) / "bundle.json").unlink()
    refused = service.client.get(_path(done.study_id), headers=service.bearer(actors.admin))
    assert refused.status_code == 404
    assert refused.json()["type"] == "urn:metai:problem:lineage-missing"
    assert "no lineage index" in refused.json()["detail"]
