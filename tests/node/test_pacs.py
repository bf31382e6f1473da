"""The PACS client and pull against a real Orthanc started on loopback."""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from deploy.anvil import free_port
from node.errors import NodeConfigError, PacsError
from node.pacs import OrthancClient, PacsStudy, pull_studies
from tests.node.orthanc_fixture import OrthancServer

# Public pydicom test files, each its own study (distinct StudyInstanceUID and PatientID).
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb.dcm")


@dataclass(frozen=True)
class Uploaded:
    name: str
    data: bytes
    instance_id: str
    study_instance_uid: str
    patient_id: str


@pytest.fixture
def pacs(orthanc: OrthancServer) -> Iterator[OrthancClient]:
    with orthanc.client() as client:
        yield client


@pytest.fixture(scope="module")
def uploaded(orthanc: OrthancServer) -> dict[str, Uploaded]:
    """The sample files, stored in the PACS once for this module, by file name."""
    result = {}
    with orthanc.client() as client:
        for name in SAMPLES:
            path = get_testdata_file(name)
            assert path is not None, f"pydicom test file {name} is missing"
            data = Path(path).read_bytes()
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            result[name] = Uploaded(name, data, client.upload(data), ds.StudyInstanceUID, ds.PatientID)
    return result


def _study(client: OrthancClient, uid: str) -> PacsStudy:
    (study,) = client.find_studies(study_instance_uid=uid)
    return study


def _new_study(instances: int, patient_id: str) -> tuple[str, list[bytes]]:
    """A study of its own: CT_small copied under fresh UIDs, ``instances`` times."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for number in range(1, instances + 1):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.StudyDate, ds.InstanceNumber = patient_id, "19990101", number
        buffer = io.BytesIO()
        ds.save_as(buffer)
        files.append(buffer.getvalue())
    return study_uid, files


# ---------------------------------------------------------------------- the client


def test_system_describes_the_orthanc_server(pacs: OrthancClient) -> None:
    info = pacs.system()
    assert info["Name"] == "metai-test-pacs"
    assert isinstance(info["Version"], str)
    assert info["Version"]


def test_upload_returns_an_id_listed_under_its_study(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    ct = uploaded["CT_small.dcm"]
    assert pacs.instance_ids(_study(pacs, ct.study_instance_uid)) == [ct.instance_id]


def test_uploading_a_stored_file_again_returns_the_same_id(
    pacs: OrthancClient, uploaded: dict[str, Uploaded]
) -> None:
    mr = uploaded["MR_small.dcm"]
    assert pacs.upload(mr.data) == mr.instance_id


def test_studies_lists_every_uploaded_study_with_its_instance_count(
    pacs: OrthancClient, uploaded: dict[str, Uploaded]
) -> None:
    counts = {study.study_instance_uid: study.instance_count for study in pacs.studies()}
    assert {u.study_instance_uid: counts.get(u.study_instance_uid) for u in uploaded.values()} == {
        u.study_instance_uid: 1 for u in uploaded.values()
    }


def test_find_by_study_instance_uid_returns_that_study_only(
    pacs: OrthancClient, uploaded: dict[str, Uploaded]
) -> None:
    rt = uploaded["rtplan.dcm"]
    found = pacs.find_studies(study_instance_uid=rt.study_instance_uid)
    assert [(s.study_instance_uid, s.instance_count) for s in found] == [(rt.study_instance_uid, 1)]


def test_find_by_patient_id(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    sc = uploaded["SC_rgb.dcm"]
    assert [s.study_instance_uid for s in pacs.find_studies(patient_id=sc.patient_id)] == [sc.study_instance_uid]


def test_find_by_study_date_range(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    # MR_small and JPEG2000 were acquired on 2004-08-26, CT_small on 2004-01-19.
    found = {s.study_instance_uid for s in pacs.find_studies(study_date="20040801-20040831")}
    assert found == {uploaded["MR_small.dcm"].study_instance_uid, uploaded["JPEG2000.dcm"].study_instance_uid}


def test_find_combines_criteria(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    ct = uploaded["CT_small.dcm"]
    assert pacs.find_studies(patient_id=ct.patient_id, study_date="20040826") == []


def test_find_an_unknown_uid_returns_nothing(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    assert pacs.find_studies(study_instance_uid="1.2.3.4.5.6.7.8.9") == []


def test_find_refuses_a_malformed_date(pacs: OrthancClient) -> None:
    with pytest.raises(ValueError, match=r"study date '2004-08-26' is not YYYYMMDD"):
        pacs.find_studies(study_date="2004-08-26")


def test_find_refuses_a_malformed_uid(pacs: OrthancClient) -> None:
    with pytest.raises(ValueError, match=r"StudyInstanceUID '1\.2\.\*' is not a DICOM UID"):
        pacs.find_studies(study_instance_uid="1.2.*")


def test_download_returns_the_stored_bytes(pacs: OrthancClient, uploaded: dict[str, Uploaded]) -> None:
    js = uploaded["JPEG2000.dcm"]
    assert pacs.download_instance(js.instance_id) == js.data


def test_download_of_an_unknown_instance_is_a_404(pacs: OrthancClient, orthanc: OrthancServer) -> None:
    unknown = "00000000-00000000-00000000-00000000-00000000"
    with pytest.raises(PacsError, match=rf"^404 from {orthanc.url}/instances/{unknown}/file: not found"):
        pacs.download_instance(unknown)


def test_download_refuses_an_id_that_is_not_orthancs(pacs: OrthancClient) -> None:
    with pytest.raises(ValueError, match=r"instance id '\.\./system' is not an Orthanc id"):
        pacs.download_instance("../system")


def test_upload_of_a_non_dicom_file_is_a_400(pacs: OrthancClient, orthanc: OrthancServer) -> None:
    with pytest.raises(PacsError, match=rf"^400 from {orthanc.url}/instances: Orthanc refused .*Bad file format"):
        pacs.upload(b"not a DICOM file")


# ---------------------------------------------------------------------- errors and credentials


def test_wrong_password_is_a_401_that_does_not_echo_it(orthanc: OrthancServer) -> None:
    wrong = "not-the-password-" + orthanc.password[:4]
    expected = rf"^401 from {orthanc.url}/system: wrong username or password"
    with (
        OrthancClient(orthanc.url, orthanc.username, wrong) as client,
        pytest.raises(PacsError, match=expected) as err,
    ):
        client.system()
    assert wrong not in str(err.value)
    assert orthanc.password not in str(err.value)


def test_missing_credentials_are_a_401_that_says_which_variables_to_set(orthanc: OrthancServer) -> None:
    with OrthancClient(orthanc.url) as client, pytest.raises(PacsError, match=r"^401 .*METAI_NODE_PACS_USER"):
        client.studies()


def test_unreachable_pacs_is_reported_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    expected = rf"^cannot reach the PACS at {url}/system \(.*\): check METAI_NODE_PACS_URL"
    with OrthancClient(url, "user", "secret") as client, pytest.raises(PacsError, match=expected):
        client.system()


def test_a_server_that_is_not_orthanc_is_reported_as_non_json() -> None:
    class HtmlPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Please log in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        expected = r"^200 from .*/system: the answer is not JSON \(text/html\)"
        with OrthancClient(url, "user", "secret") as client, pytest.raises(PacsError, match=expected):
            client.system()
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(NodeConfigError, match="contains a username or password") as err:
        OrthancClient("http://admin:hunter2@127.0.0.1:8042")
    assert "hunter2" not in str(err.value)


def test_half_given_credentials_are_refused() -> None:
    with pytest.raises(NodeConfigError, match="credentials are incomplete"):
        OrthancClient("http://127.0.0.1:8042", "user")


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(NodeConfigError, match=r"PACS URL 'ftp://pacs' is not an http\(s\) URL"):
        OrthancClient("ftp://pacs")


def test_orthanc_refuses_clients_that_are_not_on_loopback(orthanc: OrthancServer) -> None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing address
            address = probe.getsockname()[0]
    except OSError:
        pytest.skip("this machine has no IPv4 address besides loopback")
    if address.startswith("127."):
        pytest.skip("this machine has no IPv4 address besides loopback")
    url = orthanc.url.replace("127.0.0.1", address)
    # Refused either at connect (Orthanc >= 1.12.10 binds 127.0.0.1) or by Orthanc's remote-access check.
    with (
        OrthancClient(url, orthanc.username, orthanc.password) as client,
        pytest.raises(PacsError, match=r"^(cannot reach|401|403)"),
    ):
        client.system()


# ---------------------------------------------------------------------- pull


def test_pull_all_writes_the_stored_bytes_under_study_and_instance_ids(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    report = pull_studies(pacs, tmp_path)
    assert report.failed == ()
    assert report.skipped_existing == ()
    for sample in uploaded.values():
        target = tmp_path / _study(pacs, sample.study_instance_uid).orthanc_id / f"{sample.instance_id}.dcm"
        assert target in report.downloaded
        assert target.read_bytes() == sample.data
    assert sorted(report.downloaded) == sorted(tmp_path.glob("*/*.dcm"))
    assert list(tmp_path.glob("*/.*")) == []  # no temporary file left behind


def test_a_second_pull_skips_what_is_already_there(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    first = pull_studies(pacs, tmp_path)
    second = pull_studies(pacs, tmp_path)
    assert second.downloaded == ()
    assert second.failed == ()
    assert sorted(second.skipped_existing) == sorted(first.downloaded)


def test_a_file_of_the_wrong_size_is_downloaded_again(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    ct = uploaded["CT_small.dcm"]
    target = tmp_path / _study(pacs, ct.study_instance_uid).orthanc_id / f"{ct.instance_id}.dcm"
    target.parent.mkdir()
    target.write_bytes(ct.data[:1000])  # as if an earlier copy had been cut short
    report = pull_studies(pacs, tmp_path, study_uids=[ct.study_instance_uid])
    assert report.downloaded == (target,)
    assert target.read_bytes() == ct.data


def test_pull_selects_studies_by_study_instance_uid(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    chosen = [uploaded["CT_small.dcm"], uploaded["MR_small.dcm"]]
    report = pull_studies(pacs, tmp_path, study_uids=[u.study_instance_uid for u in chosen])
    assert report.failed == ()
    assert sorted(p.name for p in report.downloaded) == sorted(f"{u.instance_id}.dcm" for u in chosen)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        _study(pacs, u.study_instance_uid).orthanc_id for u in chosen
    )


def test_an_unknown_study_uid_is_reported_and_the_others_are_pulled(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    rt = uploaded["rtplan.dcm"]
    report = pull_studies(pacs, tmp_path, study_uids=["1.2.3.999", rt.study_instance_uid])
    assert report.failed == (("1.2.3.999", "no study with this StudyInstanceUID in the PACS"),)
    assert [p.read_bytes() for p in report.downloaded] == [rt.data]


def test_a_malformed_study_uid_is_reported_and_the_others_are_pulled(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    sc = uploaded["SC_rgb.dcm"]
    report = pull_studies(pacs, tmp_path, study_uids=["1.2.*", sc.study_instance_uid])
    assert [(item, reason.split(" is not ")[1]) for item, reason in report.failed] == [
        ("1.2.*", "a DICOM UID (digits and dots, at most 64)")
    ]
    assert [p.read_bytes() for p in report.downloaded] == [sc.data]


def test_progress_is_reported_after_each_instance(
    pacs: OrthancClient, uploaded: dict[str, Uploaded], tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []
    uids = [u.study_instance_uid for u in uploaded.values()]
    pull_studies(pacs, tmp_path, study_uids=uids, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, len(uids)) for done in range(1, len(uids) + 1)]


def test_an_instance_deleted_during_the_pull_is_reported_and_the_rest_go_through(
    pacs: OrthancClient, orthanc: OrthancServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study_uid, files = _new_study(3, patient_id="PULL-DELETE")
    ids = [pacs.upload(data) for data in files]
    second = pacs.instance_ids(_study(pacs, study_uid))[1]  # the pull follows this order
    deleted: list[str] = []

    def delete_the_second_after_the_first(done: int, total: int) -> None:
        if done == 1:
            answer = httpx.delete(f"{orthanc.url}/instances/{second}", auth=(orthanc.username, orthanc.password))
            assert answer.status_code == 200
            deleted.append(second)

    with caplog.at_level(logging.WARNING, logger="node.pacs"):
        report = pull_studies(pacs, tmp_path, study_uids=[study_uid], progress=delete_the_second_after_the_first)
    assert deleted == [second]
    assert [item for item, _ in report.failed] == deleted
    assert report.failed[0][1].startswith("404 from ")
    assert sorted(p.stem for p in report.downloaded) == sorted(set(ids) - set(deleted))
    kept = {data for instance_id, data in zip(ids, files, strict=True) if instance_id not in deleted}
    assert {p.read_bytes() for p in report.downloaded} == kept
    assert deleted[0] in caplog.text
    assert orthanc.password not in caplog.text


def test_pull_with_wrong_credentials_raises_before_writing_anything(orthanc: OrthancServer, tmp_path: Path) -> None:
    with OrthancClient(orthanc.url, orthanc.username, "wrong") as client, pytest.raises(PacsError, match=r"^401 from "):
        pull_studies(client, tmp_path / "import")
    assert not (tmp_path / "import").exists()
