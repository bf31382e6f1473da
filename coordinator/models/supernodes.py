"""Hospitals' SuperNode keys registered on the SuperLink: what the operator sends, what the service shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from coordinator.federated.supernodes import SuperNode


class SuperNodeCreate(BaseModel):
    """A hospital's SuperNode key to register under its name."""

    name: str = Field(min_length=1, max_length=63, description="The hospital's name or address on the federation: "
                                                                "1-63 letters, digits, '.', '_' or '-'")
    public_key: str = Field(max_length=1024, description="The one OpenSSH line `metai-node federation-key` prints "
                                                         "on the hospital host: 'ecdsa-sha2-nistp384 AAAA...'")


class SuperNodePublic(BaseModel):
    """A SuperNode the SuperLink knows."""

    node_id: str = Field(description="Flower's node id, in decimal (it may exceed 2^53)")
    name: str
    status: Literal["registered", "online", "offline", "unregistered"] | str = Field(
        description="registered: admitted, never connected; online / offline: connected now / not now; "
                    "unregistered: refused from now on (its key is never admitted again)")
    public_key: str = Field(description="The OpenSSH public key line")
    fingerprint: str = Field(description="The key's SHA-256 fingerprint as `ssh-keygen -l` prints it")
    registered_at: str
    last_activated_at: str | None

    @classmethod
    def of(cls, node: SuperNode) -> SuperNodePublic:
        """The public view of ``node``."""
        return cls(node_id=str(node.node_id), name=node.name, status=node.status, public_key=node.public_key,
                   fingerprint=node.fingerprint, registered_at=node.registered_at,
                   last_activated_at=node.last_activated_at)
