"""Field types shared by the request and response schemas."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated

from eth_utils.address import is_address, to_checksum_address
from pydantic import AfterValidator, Field


def _address(value: str) -> str:
    if not is_address(value):
        raise ValueError("expected an Ethereum address: 0x and 40 hex digits (EIP-55 checksum if mixed case)")
    return to_checksum_address(value)


#: An Ethereum address, returned checksummed.
Address = Annotated[str, Field(examples=["0x000000000000000000000000000000000000dEaD"],
                               pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_address)]
#: A 32-byte hash as 0x and 64 hex digits.
Hash32 = Annotated[str, Field(pattern=r"^0x[0-9a-f]{64}$")]
#: An unsigned integer the database and JavaScript both hold exactly (below 2**53).
Uint53 = Annotated[int, Field(ge=0, le=2**53 - 1)]


def _utc(value: _dt.datetime) -> _dt.datetime:
    # The database holds UTC without a zone; the API always says which zone a time is in (RFC 3339).
    return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value.astimezone(_dt.UTC)


#: A moment in UTC, written with its offset (RFC 3339 date-time).
UtcDatetime = Annotated[_dt.datetime, AfterValidator(_utc)]
