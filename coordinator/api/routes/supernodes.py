"""Hospitals' SuperNode keys on the SuperLink: the coordinator operator or the consortium admin registers,
lists and unregisters them.

A SuperLink run with SuperNode authentication admits only registered keys, so registering a
hospital's key is what lets its SuperNode into the federation. The calls go to the SuperLink's
Control API on the coordinator host (:mod:`coordinator.federated.supernodes`); the Fleet gateway
that hospitals reach never forwards that API.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from contracts.enums import Role
from coordinator.api.deps import ServicesDep, SignedIn, SignedInDep
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.federated.control import ControlError, ControlUnavailable
from coordinator.federated.supernodes import (
    SuperNodeConflict,
    SuperNodeKeyError,
    SuperNodeNotFound,
    SuperNodeRegistry,
    parse_public_key,
)
from coordinator.models.supernodes import SuperNodeCreate, SuperNodePublic
from coordinator.service import Services

router = APIRouter(tags=["supernodes"], responses=PROBLEM_RESPONSES)


def _admin(account: SignedIn) -> None:
    if not (account.has(Role.COORDINATOR) or account.has(Role.CONSORTIUM_ADMIN)):
        raise Problem(403, "role-required", "Only the coordinator operator or the consortium admin manages SuperNodes",
                      f"{account.address} holds neither the COORDINATOR nor the consortium admin role on chain")


def _registry(services: Services) -> SuperNodeRegistry:
    if services.supernodes is None:
        raise Problem(503, "superlink-unconfigured", "This service has no SuperLink",
                      "neither METAI_COORDINATOR_SUPERLINK=managed nor METAI_COORDINATOR_SUPERLINK_ADDRESS is set; "
                      "the operator configures the SuperLink first")
    return services.supernodes


def _unavailable(exc: ControlUnavailable | ControlError) -> Problem:
    if isinstance(exc, ControlUnavailable):
        return Problem(503, "superlink-unavailable", "The SuperLink does not answer", f"{exc}; try again shortly",
                       headers={"Retry-After": "5"})
    return Problem(502, "superlink-refused", "The SuperLink refused the call", str(exc))


@router.post("/supernodes", status_code=201, responses={200: {"model": SuperNodePublic,
                                                              "description": "The key was registered already"}})
def register(body: SuperNodeCreate, account: SignedInDep, services: ServicesDep, response: Response) -> SuperNodePublic:
    """Register a hospital's SuperNode public key under its name (201); the same key and name again answer 200."""
    _admin(account)
    registry = _registry(services)
    try:
        node, created = registry.register(body.name, parse_public_key(body.public_key))
    except SuperNodeKeyError as exc:
        raise Problem(422, "invalid-supernode-key", "The SuperNode key or name is invalid", str(exc)) from None
    except SuperNodeConflict as exc:
        raise Problem(409, "supernode-conflict", "The key or the name is taken", str(exc)) from None
    except (ControlUnavailable, ControlError) as exc:
        raise _unavailable(exc) from None
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/supernodes/{node.node_id}"
    return SuperNodePublic.of(node)


@router.get("/supernodes")
def list_supernodes(account: SignedInDep, services: ServicesDep) -> list[SuperNodePublic]:
    """Every SuperNode the SuperLink knows, unregistered ones included, oldest first."""
    _admin(account)
    try:
        return [SuperNodePublic.of(node) for node in _registry(services).list()]
    except (ControlUnavailable, ControlError) as exc:
        raise _unavailable(exc) from None


@router.delete("/supernodes/{node_id}")
def unregister(node_id: int, account: SignedInDep, services: ServicesDep) -> SuperNodePublic:
    """Unregister a SuperNode: its key is refused from now on, and never admitted again (Flower keeps it)."""
    _admin(account)
    try:
        return SuperNodePublic.of(_registry(services).unregister(node_id))
    except SuperNodeNotFound as exc:
        raise Problem(404, "not-found", "No such SuperNode", str(exc)) from None
    except (ControlUnavailable, ControlError) as exc:
        raise _unavailable(exc) from None
