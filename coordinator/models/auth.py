"""Sign-in (EIP-4361) requests and responses."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.models.common import Address, UtcDatetime


class ChallengeCreate(BaseModel):
    """Ask for a sign-in message to sign."""

    address: Address = Field(description="The account that will sign in")


class ChallengePublic(BaseModel):
    """The EIP-4361 message to sign with personal_sign, and until when it is accepted."""

    message: str = Field(description="The exact text to sign (EIP-191 personal_sign)")
    nonce: str
    expires_at: UtcDatetime


class SignInCreate(BaseModel):
    """A signed sign-in message."""

    message: str = Field(max_length=4096, description="The message as issued, unchanged")
    signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{130}$", description="65-byte signature, hex")


class SessionPublic(BaseModel):
    """A session just opened. The token is shown once: scripts send it as ``Authorization: Bearer``."""

    address: Address
    roles: list[str] = Field(
        description="Roles the address holds on chain; every address is a patient for its own data")
    token: str
    csrf_token: str = Field(description="Send as X-CSRF-Token with every state-changing request made with the cookie")
    expires_at: UtcDatetime


class MePublic(BaseModel):
    """Who is signed in."""

    address: Address
    roles: list[str]
    expires_at: UtcDatetime
