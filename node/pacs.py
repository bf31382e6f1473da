"""Pull DICOM studies from the hospital's PACS through Orthanc's REST API.

The node never writes to the PACS during an import: it lists studies, lists their instances
and downloads each instance file exactly as Orthanc stored it. Every HTTP problem becomes a
:class:`~node.errors.PacsError` naming the URL, the status and what to do; credentials travel
only in the ``Authorization`` header and never appear in a message or a log line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from node.config import check_pacs_url
from node.errors import NodeConfigError, PacsError

__all__ = ["OrthancClient", "PacsStudy", "PullReport", "pull_studies"]

_log = logging.getLogger(__name__)

# Orthanc's identifiers are SHA-1 digests written as five dash-separated groups of 8 hex digits.
# They become file and directory names, so anything else from the PACS is refused.
#: The folder of the node directory where ``import-pacs`` downloads instances before ingesting them.
INBOX_DIR = "pacs-inbox"
_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_DICOM_DATE = re.compile(r"\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8}")
_PAGE = 500  # studies per listing request, so a large PACS is not listed in one answer
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PacsStudy:
    """One study as the PACS holds it."""

    orthanc_id: str
    study_instance_uid: str
    instance_count: int


@dataclass(frozen=True)
class PullReport:
    """What :func:`pull_studies` did, item by item.

    ``failed`` holds ``(id, reason)`` pairs: an Orthanc instance id for an instance that could
    not be downloaded, an Orthanc study id for a study whose instances could not be listed, or
    a requested StudyInstanceUID that is malformed or that the PACS does not hold.
    """

    downloaded: tuple[Path, ...]
    skipped_existing: tuple[Path, ...]
    failed: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Instance:
    study_id: str
    instance_id: str
    size: int  # bytes, as Orthanc's index records the stored file


class OrthancClient:
    """A client for the REST API of one Orthanc server."""

    def __init__(
        self, url: str, username: str | None = None, password: str | None = None, *, timeout: float = 30.0
    ) -> None:
        """Prepare a client; no request is sent until a method is called.

        Parameters:
            url: root of Orthanc's REST API, e.g. ``http://pacs.local:8042`` (a path prefix is
                kept for an Orthanc behind a reverse proxy). It must not contain credentials.
            username, password: HTTP Basic credentials of an Orthanc registered user; give both
                or neither.
            timeout: seconds to wait for a connection or for each read.

        Raises:
            NodeConfigError: the URL is not an http(s) URL, carries credentials, or only one of
                username and password is given.
        """
        self.url = check_pacs_url(url)
        if (username is None) != (password is None):
            raise NodeConfigError(
                "PACS credentials are incomplete: set both METAI_NODE_PACS_USER and METAI_NODE_PACS_PASSWORD, "
                "or neither"
            )
        if username is not None and (not username or ":" in username):
            raise NodeConfigError(f"PACS username {username!r} is empty or contains ':'; use Orthanc's user name")
        if timeout <= 0:
            raise NodeConfigError(f"PACS timeout is {timeout} s, expected a positive number of seconds")
        self._has_credentials = username is not None
        auth = httpx.BasicAuth(username, password) if username is not None and password is not None else None
        # trust_env=False: the configured URL and credentials are the only inputs (no proxy
        # variables, no ~/.netrc), as the house rule keeps os.environ to the Settings class.
        self._http = httpx.Client(auth=auth, timeout=timeout, trust_env=False, follow_redirects=False)
        self._timeout = timeout

    def close(self) -> None:
        """Close the underlying connections."""
        self._http.close()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def system(self) -> dict[str, Any]:
        """Return Orthanc's ``/system`` description (version, name, API version).

        Raises:
            PacsError: unreachable, wrong credentials, or an answer that is not Orthanc's.
        """
        return _expect_dict(self._get_json("/system"), self.url + "/system")

    def studies(self) -> list[PacsStudy]:
        """List every study in the PACS.

        Raises:
            PacsError: a request failed or an answer had an unexpected shape.
        """
        found: dict[str, PacsStudy] = {}
        since = 0
        while True:
            path = f"/studies?expand&since={since}&limit={_PAGE}"
            page = self._get_json(path)
            if not isinstance(page, list):
                raise _shape_error(self.url + path, "a list of studies")
            for entry in page:
                study = self._study(entry, self.url + path)
                found.setdefault(study.orthanc_id, study)
            if len(page) < _PAGE:
                return list(found.values())
            since += _PAGE

    def find_studies(
        self, *, study_instance_uid: str | None = None, patient_id: str | None = None, study_date: str | None = None
    ) -> list[PacsStudy]:
        """List the studies matching every given criterion (all studies if none is given).

        Matching follows DICOM C-FIND, as Orthanc's ``/tools/find`` does: ``patient_id`` may use
        the wildcards ``*`` and ``?``; ``study_date`` is ``YYYYMMDD`` or a range
        ``YYYYMMDD-YYYYMMDD`` (either end may be left open).

        Raises:
            ValueError: a malformed StudyInstanceUID or date.
            PacsError: a request failed or an answer had an unexpected shape.
        """
        query: dict[str, str] = {}
        if study_instance_uid is not None:
            if len(study_instance_uid) > 64 or not _UID.fullmatch(study_instance_uid):
                raise ValueError(
                    f"StudyInstanceUID {study_instance_uid!r} is not a DICOM UID (digits and dots, at most 64)"
                )
            query["StudyInstanceUID"] = study_instance_uid
        if patient_id is not None:
            query["PatientID"] = patient_id
        if study_date is not None:
            if not _DICOM_DATE.fullmatch(study_date):
                raise ValueError(f"study date {study_date!r} is not YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
            query["StudyDate"] = study_date
        url = self.url + "/tools/find"
        answer = self._json("POST", "/tools/find", json_body={"Level": "Study", "Query": query, "Expand": True})
        if not isinstance(answer, list):
            raise _shape_error(url, "a list of studies")
        return [self._study(entry, url) for entry in answer]

    def instance_ids(self, study: PacsStudy) -> list[str]:
        """List the Orthanc ids of the instances of ``study``, sorted.

        Raises:
            PacsError: a request failed (404 if the study was deleted from the PACS).
        """
        return [instance.instance_id for instance in self._instances(study)]

    def download_instance(self, instance_id: str) -> bytes:
        """Download one instance's DICOM file, byte for byte as Orthanc stored it.

        Raises:
            ValueError: ``instance_id`` is not an Orthanc id.
            PacsError: a request failed (404 if the instance is not in the PACS).
        """
        buffer = io.BytesIO()
        self._download_to(_check_id(instance_id, "instance id"), buffer)
        return buffer.getvalue()

    def upload(self, dicom_bytes: bytes) -> str:
        """Store one DICOM file in the PACS and return its Orthanc instance id.

        Storing a file that is already there is not an error; its existing id is returned.

        Raises:
            PacsError: Orthanc refused the file (400 if it is not DICOM) or a request failed.
        """
        url = self.url + "/instances"
        answer = _expect_dict(
            self._json("POST", "/instances", content=dicom_bytes, headers={"Content-Type": "application/dicom"}), url
        )
        return _answer_id(answer.get("ID"), url)

    # ------------------------------------------------------------------ internals

    def _instances(self, study: PacsStudy) -> list[_Instance]:
        study_id = _check_id(study.orthanc_id, "study id")
        path = f"/studies/{study_id}/instances"
        answer = self._get_json(path)
        if not isinstance(answer, list):
            raise _shape_error(self.url + path, "a list of instances")
        instances = []
        for entry in answer:
            entry = _expect_dict(entry, self.url + path)
            size = entry.get("FileSize")
            if not isinstance(size, int) or size < 0:
                raise _shape_error(self.url + path, "a FileSize for each instance")
            instances.append(_Instance(study_id, _answer_id(entry.get("ID"), self.url + path), size))
        return sorted(instances, key=lambda i: i.instance_id)

    def _study(self, entry: Any, url: str) -> PacsStudy:
        entry = _expect_dict(entry, url)
        study_id = _answer_id(entry.get("ID"), url)
        tags = entry.get("MainDicomTags")
        uid = tags.get("StudyInstanceUID") if isinstance(tags, dict) else None
        if not isinstance(uid, str):
            raise _shape_error(url, "a StudyInstanceUID for each study")
        stats_path = f"/studies/{study_id}/statistics"
        count = _expect_dict(self._get_json(stats_path), self.url + stats_path).get("CountInstances")
        if not isinstance(count, int):
            raise _shape_error(self.url + stats_path, "CountInstances")
        return PacsStudy(orthanc_id=study_id, study_instance_uid=uid, instance_count=count)

    def _download_to(self, instance_id: str, out: BinaryIO) -> int:
        url = f"{self.url}/instances/{instance_id}/file"
        written = 0
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    response.read()
                    raise PacsError(self._status_message(response, url))
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, url) from exc
        return written

    def _get_json(self, path: str) -> Any:
        return self._json("GET", path)

    def _json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.url + path
        try:
            response = self._http.request(method, url, json=json_body, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, url) from exc
        if response.status_code != 200:
            raise PacsError(self._status_message(response, url))
        try:
            return response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both derive from it
            kind = response.headers.get("content-type", "no content type")
            raise PacsError(
                f"200 from {_public(url)}: the answer is not JSON ({kind}); METAI_NODE_PACS_URL must be the root of "
                "Orthanc's REST API, not a web page or a proxy's login page"
            ) from exc

    def _status_message(self, response: httpx.Response, url: str) -> str:
        status = response.status_code
        if status == 401:
            advice = (
                "wrong username or password; check METAI_NODE_PACS_USER and METAI_NODE_PACS_PASSWORD (Orthanc also "
                "answers 401 to hosts it does not accept remote access from)"
                if self._has_credentials
                else "Orthanc requires credentials; set METAI_NODE_PACS_USER and METAI_NODE_PACS_PASSWORD"
            )
        elif status == 403:
            advice = "forbidden; give this Orthanc user access to the REST API, or allow this host in Orthanc"
        elif status == 404:
            advice = (
                "not found; the resource is no longer in the PACS, or METAI_NODE_PACS_URL is not the root of "
                "Orthanc's REST API"
            )
        elif 400 <= status < 500:
            advice = "Orthanc refused the request"
        elif status >= 500:
            advice = "Orthanc failed; see the Orthanc log on the PACS server"
        else:
            advice = "unexpected answer; METAI_NODE_PACS_URL must be the root of Orthanc's REST API"
        return f"{status} from {_public(url)}: {advice}{_orthanc_detail(response)}"

    def _transport_error(self, exc: httpx.TransportError, url: str) -> PacsError:
        if isinstance(exc, httpx.TimeoutException):
            return PacsError(
                f"no answer from {_public(url)} within {self._timeout:g} s: check that Orthanc is running, "
                "or raise the timeout"
            )
        reason = str(exc) or type(exc).__name__
        return PacsError(
            f"cannot reach the PACS at {_public(url)} ({reason}): check METAI_NODE_PACS_URL and that Orthanc is running"
        )


def pull_studies(
    client: OrthancClient,
    dest: Path,
    *,
    study_uids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PullReport:
    """Download every instance of the selected studies into ``dest/<study id>/<instance id>.dcm``.

    Each file is written to a hidden ``.part`` file next to it and renamed into place, so a
    file with the final name is always complete. A file already present with the size the PACS
    records is skipped, so an interrupted pull resumes where it stopped. A failing instance
    does not stop the pull: it is listed in the report with the reason, and the rest go through.
    Studies are pulled one after the other, each in the order of :meth:`OrthancClient.instance_ids`.

    Parameters:
        client: the PACS to pull from.
        dest: the import folder (created if needed).
        study_uids: StudyInstanceUIDs to pull; every study in the PACS if None.
        progress: called as ``progress(done, total)`` after each instance (downloaded, skipped
            or failed), ``total`` being the number of instances selected.

    Returns:
        What was downloaded, skipped and why anything failed.

    Raises:
        PacsError: the studies cannot be selected (PACS unreachable, wrong credentials); nothing
            has been downloaded then.
    """
    failed: list[tuple[str, str]] = []

    def fail(item: str, reason: str) -> None:
        failed.append((item, reason))
        _log.warning("%s not pulled: %s", item, reason)

    if study_uids is None:
        studies = client.studies()
    else:
        studies = []
        for uid in dict.fromkeys(study_uids):  # drop repeats, keep the order
            try:
                matches = client.find_studies(study_instance_uid=uid)
            except ValueError as exc:
                fail(uid, str(exc))
                continue
            if not matches:
                fail(uid, "no study with this StudyInstanceUID in the PACS")
            studies.extend(matches)
    plan: list[_Instance] = []
    for study in studies:
        try:
            plan.extend(client._instances(study))
        except PacsError as exc:
            fail(study.orthanc_id, f"cannot list the study's instances: {exc}")
    downloaded: list[Path] = []
    skipped: list[Path] = []
    for done, instance in enumerate(plan, start=1):
        target = dest / instance.study_id / f"{instance.instance_id}.dcm"
        try:
            if target.is_file() and target.stat().st_size == instance.size:
                skipped.append(target)
            else:
                _fetch_atomically(client, instance, target)
                downloaded.append(target)
        except (PacsError, OSError) as exc:
            fail(instance.instance_id, str(exc))
        if progress is not None:
            progress(done, len(plan))
    return PullReport(downloaded=tuple(downloaded), skipped_existing=tuple(skipped), failed=tuple(failed))


def _fetch_atomically(client: OrthancClient, instance: _Instance, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    try:
        with open(part, "wb") as out:
            written = client._download_to(instance.instance_id, out)
            out.flush()
            os.fsync(out.fileno())
        if written != instance.size:
            raise PacsError(
                f"instance {instance.instance_id}: received {written} bytes, the PACS records {instance.size}; "
                "pull again"
            )
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(OSError):  # cleanup must not hide the first error
            part.unlink(missing_ok=True)
        raise


def _check_id(value: str, what: str) -> str:
    if not _ORTHANC_ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an Orthanc id (five groups of 8 lowercase hex digits)")
    return value


def _answer_id(value: Any, url: str) -> str:
    if not isinstance(value, str) or not _ORTHANC_ID.fullmatch(value):
        raise _shape_error(url, "Orthanc ids (five groups of 8 lowercase hex digits)")
    return value


def _expect_dict(value: Any, url: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _shape_error(url, "a JSON object")
    return value


def _shape_error(url: str, expected: str) -> PacsError:
    return PacsError(
        f"unexpected answer from {_public(url)}: expected {expected}; is METAI_NODE_PACS_URL an Orthanc server?"
    )


def _public(url: str) -> str:
    """``url`` without its query string, which only carries listing parameters."""
    return url.split("?", 1)[0]


def _orthanc_detail(response: httpx.Response) -> str:
    """Orthanc's own explanation of an error, when it sends one (``HttpDescribeErrors``)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    words = [str(body[k]) for k in ("Message", "Details") if isinstance(body.get(k), str) and body[k]]
    return f" (Orthanc says: {': '.join(words)})" if words else ""
