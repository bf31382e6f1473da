"""Studies: the tasks to train, a request prepared for the researcher's wallet, following, lineage (facts and
bundle), model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from contracts.datause import Purpose
from contracts.enums import Role, StudyStatus
from contracts.studies import StudyRequest
from coordinator.api.deps import IndexDep, ServicesDep, SignedIn, SignedInDep
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.chain_index import ChainIndex
from coordinator.lineage import LineageError, bundle_folder
from coordinator.lineage_archive import LineageIncomplete, LineageMismatch, archive_name, bundle_members, tar_chunks
from coordinator.models.consents import kinds_of
from coordinator.models.studies import (
    PreparedTransaction,
    StudyCreate,
    StudyPublic,
    StudyRequestAccepted,
    StudySummary,
    TaskPublic,
)
from coordinator.service import Services
from coordinator.study_log import final_model, study_folder
from coordinator.study_view import StudyNotFound, lineage, purpose_words, study_public, summary

router = APIRouter(tags=["studies"], responses=PROBLEM_RESPONSES)
#: Seconds between the chain reads of a study being followed live.
FOLLOW_POLL = 1.0
#: Seconds between keep-alive comments on a quiet event stream.
KEEP_ALIVE = 15.0


def _parts(account: SignedIn, researcher: str, hospitals: tuple[str, ...] | list[str]) -> list[str]:
    parts = []
    if account.address == researcher:
        parts.append("researcher")
    if account.address in hospitals:
        parts.append("named hospital")
    if account.has(Role.COORDINATOR):
        parts.append("coordinator")
    if account.has(Role.CONSORTIUM_ADMIN):
        parts.append("admin")
    return parts


def visible_study(services: Services, account: SignedIn, study_id: int) -> StudyPublic:
    """The study, if the caller is its researcher, a hospital it names, the coordinator or an admin; else 404."""
    try:
        view = study_public(services.index, study_id, services.settings.model_dir, services.task_names())
    except StudyNotFound as exc:
        raise Problem(404, "not-found", "No such study", str(exc)) from None
    if not _parts(account, view.researcher, [d.hospital for d in view.decisions]):
        # a study the caller has no part in is as good as absent to them
        raise Problem(404, "not-found", "No such study", f"you have no part in a study {study_id}")
    return view


@router.get("/tasks")
def tasks(services: ServicesDep, _account: SignedInDep) -> list[TaskPublic]:
    """The training tasks a study can name, with the code hash the chain holds for each."""
    return [TaskPublic(code=code, code_hash="0x" + digest.hex(), description=description)
            for digest, (code, description) in services.task_catalogue().items()]


@router.post("/studies/prepare", status_code=201)
def prepare(body: StudyCreate, account: SignedInDep, services: ServicesDep) -> StudyRequestAccepted:
    """The researcher's requestStudy transaction, ready for their own wallet to sign and send."""
    if not account.has(Role.RESEARCHER):
        raise Problem(403, "role-required", "Only a researcher requests studies",
                      f"{account.address} does not hold the RESEARCHER role on chain; ask the consortium admin")
    codes = {code: digest for digest, (code, _) in services.task_catalogue().items()}
    if body.task not in codes:
        raise Problem(422, "unknown-task", "Unknown task",
                      f"no task {body.task!r}; known tasks: {', '.join(sorted(codes))}")
    roles = services.exchange.roles
    for hospital in body.hospitals:
        if not roles.has(Role.HOSPITAL, hospital):
            raise Problem(422, "not-a-hospital", "A named hospital is not a hospital",
                          f"{hospital} does not hold the HOSPITAL role on chain")
    milli = round(body.privacy_budget * 1000)
    request = StudyRequest(purpose=Purpose[body.purpose], kinds=kinds_of(body.kinds), hospitals=tuple(body.hospitals),
                           task_code_hash=codes[body.task], rounds=body.rounds, privacy_budget=milli,
                           disease=body.disease)
    studies = services.exchange.studies
    data = studies.contract.encode_abi("request", [request.as_tuple()])
    words = (f"Request a {body.rounds}-round study of task {body.task} on {', '.join(body.kinds)} data for "
             f"{purpose_words(request.purpose, request.disease)} at {len(body.hospitals)} hospital(s)")
    return StudyRequestAccepted(
        prepared=PreparedTransaction(chain_id=services.exchange.chain.chain_id, sender=account.address,
                                     to=studies.address, data=data, summary=words),
        request=body, task_code_hash="0x" + codes[body.task].hex(), privacy_budget_milli_epsilon=milli)


def visible_studies(index: ChainIndex, account: SignedIn) -> list[StudySummary]:
    """The studies ``account`` has a part in (may ask the chain for its roles)."""
    out = []
    for state in index.studies():
        parts = _parts(account, state.researcher, state.request.hospitals)
        if parts:
            out.append(summary(state, parts))
    return out


@router.get("/studies")
async def list_studies(account: SignedInDep, index: IndexDep) -> list[StudySummary]:
    """The studies I have a part in: as their researcher, a named hospital, the coordinator or an admin."""
    others = any(account.address not in (s.researcher, *s.request.hospitals) for s in index.studies())
    if others and not account.is_role_cached():  # a role decides what else is shown: ask the chain off the loop
        return await run_in_threadpool(visible_studies, index, account)
    return visible_studies(index, account)


async def _look_for_new(services: Services, study_id: int) -> None:
    """Read the chain (off the event loop) if the index does not know ``study_id``: a researcher who has just
    requested a study asks for it at once, before the index's next read, and must not be told it does not exist."""
    if services.index.study(study_id) is None:
        await run_in_threadpool(lambda: services.index.sync(force=True))


@router.get("/studies/{study_id}", response_model=StudyPublic)
async def get_study(study_id: int, account: SignedInDep, services: ServicesDep, index: IndexDep) -> Response:
    """A study's status, decisions and rounds (cohort counts per hospital, model hashes, metrics)."""
    await _look_for_new(services, study_id)

    async def build() -> bytes:
        if not services.tasks_known() or not account.is_role_cached():  # may import torch / ask the chain
            view = await run_in_threadpool(visible_study, services, account, study_id)
        else:
            view = visible_study(services, account, study_id)
        return view.model_dump_json().encode()

    body = await services.answers.answer(("study", study_id, account.address, index.block), build)
    return Response(body, media_type="application/json")


@router.get("/studies/{study_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "The study, each time it changes"}})
async def follow(study_id: int, request: Request, account: SignedInDep, services: ServicesDep) -> StreamingResponse:
    """Follow a study live (server-sent events): an ``event: study`` with the whole study each time it changes.

    The stream ends after the study is completed or declined.
    """
    await _look_for_new(services, study_id)
    first = await anyio.to_thread.run_sync(visible_study, services, account, study_id)

    async def stream() -> AsyncIterator[str]:
        view, last, quiet = first, "", 0.0
        while True:
            text = view.model_dump_json()
            if text != last:
                yield f"event: study\nid: {view.rounds_completed}\ndata: {text}\n\n"
                last, quiet = text, 0.0
            if view.status in ("completed", "declined") or await request.is_disconnected():
                return
            await anyio.sleep(FOLLOW_POLL)
            quiet += FOLLOW_POLL
            if quiet >= KEEP_ALIVE:
                yield ": keep-alive\n\n"
                quiet = 0.0
            view = await anyio.to_thread.run_sync(visible_study, services, account, study_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/studies/{study_id}/lineage")
def get_lineage(study_id: int, account: SignedInDep, services: ServicesDep) -> dict[str, object]:
    """The study's lineage in one JSON file (format metai-study-lineage 1): every contribution, root, count,
    block, transaction and model hash, and the model files' hashes recomputed."""
    view = visible_study(services, account, study_id)
    if not ({"researcher", "coordinator", "admin"} & set(_parts(account, view.researcher, []))):
        raise Problem(403, "researcher-only", "Only the study's researcher downloads its lineage",
                      f"study {study_id} was requested by {view.researcher}")
    result: dict[str, object] = lineage(services.index, study_id, services.settings.model_dir,
                                        services.task_names())
    return result


@router.get("/studies/{study_id}/lineage/bundle", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-tar": {}},
                             "description": "The lineage bundle: bundle.json and every file it lists (tar)"}})
def get_lineage_bundle(study_id: int, account: SignedInDep, services: ServicesDep) -> StreamingResponse:
    """A completed study's lineage bundle as a tar archive, for the coordinator and the consortium admin (auditors).

    It holds each hospital's update and cohort manifest (patients' addresses), so neither the researcher nor the
    hospitals get it here. Served only if its index hashes to the lineage hash anchored on chain
    (``X-Lineage-Hash``).
    """
    view = visible_study(services, account, study_id)
    if not ({"coordinator", "admin"} & set(_parts(account, view.researcher, []))):
        raise Problem(403, "auditor-only", "Only the coordinator and the consortium admin download a lineage bundle",
                      "the bundle holds the hospitals' updates and the patients' addresses of every cohort; ask the "
                      "consortium admin for it")
    state = services.index.study(study_id)
    if view.status != StudyStatus.COMPLETED.name.lower() or state is None or state.lineage_hash is None:
        raise Problem(409, "not-completed", "The study has no lineage bundle yet",
                      f"study {study_id} is {view.status}; its bundle is complete, and anchored, when the study "
                      "completes", study_status=view.status)
    folder = bundle_folder(study_folder(services.settings.model_dir, study_id))
    try:
        names = bundle_members(folder, state.lineage_hash)
    except LineageMismatch as exc:
        raise Problem(409, "lineage-mismatch", "The stored lineage bundle is not the anchored one",
                      f"{exc}; it is not served") from None
    except LineageIncomplete as exc:
        raise Problem(404, "lineage-incomplete", "A file of the lineage bundle is missing",
                      f"{exc}; the operator must restore the study's folder") from None
    except LineageError as exc:
        raise Problem(404, "lineage-missing", "The lineage bundle is missing",
                      f"{exc}; the operator must restore the study's folder") from None
    root = archive_name(study_id)
    return StreamingResponse(tar_chunks(folder, names, root), media_type="application/x-tar", headers={
        "Content-Disposition": f'attachment; filename="{root}.tar"', "Cache-Control": "no-store",
        "X-Lineage-Hash": "0x" + state.lineage_hash.hex()})


@router.get("/studies/{study_id}/model", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The final model (.npz)"}})
def get_model(study_id: int, account: SignedInDep, services: ServicesDep) -> FileResponse:
    """The final model of a completed study, for its researcher only; its on-chain hash is checked first."""
    view = visible_study(services, account, study_id)
    if account.address != view.researcher:
        raise Problem(403, "researcher-only", "Only the study's researcher downloads its model",
                      f"study {study_id} was requested by {view.researcher}")
    if view.status != StudyStatus.COMPLETED.name.lower() or view.final_model_hash is None:
        raise Problem(409, "not-completed", "The study has no final model yet", f"study {study_id} is {view.status}")
    path = final_model(study_folder(services.settings.model_dir, study_id))
    if not path.exists():
        raise Problem(404, "model-missing", "The final model file is missing",
                      f"the coordinator has no {path.name} for study {study_id}; the operator must restore it")
    from coordinator.model_loader import model_hash

    actual = model_hash(path)
    if actual != view.final_model_hash:
        raise Problem(409, "model-mismatch", "The stored model is not the anchored one",
                      f"the file hashes to {actual}, the chain anchors {view.final_model_hash}; it is not served")
    return FileResponse(path, media_type="application/octet-stream", filename=f"study-{study_id}-final.npz",
                        headers={"X-Model-Hash": actual, "Cache-Control": "no-store"})


