"""The consent digest computed directly equals what any EIP-712 wallet signs, for every field value."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import eip712
from contracts.datause import Kind, Purpose, Scope

_KEY = Account.from_key("0x" + "11" * 32)
_ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_U256 = st.integers(min_value=0, max_value=2**256 - 1)


def _checksum(address: str) -> str:
    from eth_utils.address import to_checksum_address

    return to_checksum_address(address)


@settings(max_examples=150, deadline=None)
@given(chain_id=st.integers(min_value=1, max_value=2**64), registry=_ADDRESSES, hospital=_ADDRESSES,
       purpose=st.sampled_from(list(Purpose)), disease=st.integers(min_value=1, max_value=2**32 - 1),
       study_id=_U256, kinds=st.integers(min_value=0, max_value=255), expires=st.integers(0, 2**64 - 1),
       nonce=_U256, deadline=_U256, grant=st.booleans())
def test_the_digest_is_the_one_a_wallet_signs(chain_id: int, registry: str, hospital: str, purpose: Purpose,
                                               disease: int, study_id: int, kinds: int, expires: int, nonce: int,
                                               deadline: int, grant: bool) -> None:
    registry, hospital = _checksum(registry), _checksum(hospital)
    disease = disease if purpose == Purpose.DS else 0  # only a disease-specific purpose names one
    scope = Scope(hospital=hospital, purpose=purpose, disease=disease, study_id=study_id)
    if grant:
        typed = eip712.grant_typed_data(chain_id, registry, _KEY.address, scope, Kind(kinds), expires, nonce,
                                        deadline)
    else:
        typed = eip712.revoke_typed_data(chain_id, registry, _KEY.address, scope, nonce, deadline)
    wallet = _KEY.sign_message(encode_typed_data(full_message=typed))  # eth_account's general encoder
    signed = eip712.SignedConsent(_KEY.address, scope, nonce, deadline, wallet.v, wallet.r.to_bytes(32, "big"),
                                  wallet.s.to_bytes(32, "big"), Kind(kinds) if grant else None,
                                  expires if grant else None)
    assert eip712.consent_digest(chain_id, registry, signed) == bytes(wallet.message_hash)
    assert eip712.signer_of(chain_id, registry, signed) == _KEY.address


def test_a_change_to_any_field_changes_the_signer() -> None:
    scope = Scope(purpose=Purpose.HMB)
    signed = eip712.sign_grant(_KEY, chain_id=31337, registry="0x" + "22" * 20, scope=scope, kinds=Kind.IMAGE,
                               expires_at=5, nonce=0, deadline=10**10)
    from dataclasses import replace

    for changed in (replace(signed, nonce=1), replace(signed, deadline=10**10 + 1), replace(signed, expires_at=6),
                    replace(signed, kinds=Kind.CT_SINOGRAM), replace(signed, scope=Scope(purpose=Purpose.GRU))):
        assert eip712.signer_of(31337, "0x" + "22" * 20, changed) != _KEY.address
    assert eip712.signer_of(31338, "0x" + "22" * 20, signed) != _KEY.address


@pytest.mark.parametrize("v", [0, 26, 29, 255])
def test_a_malformed_signature_is_a_value_error(v: int) -> None:
    signed = eip712.sign_revoke(_KEY, chain_id=1, registry="0x" + "22" * 20, scope=Scope(purpose=Purpose.GRU),
                                nonce=0, deadline=1)
    from dataclasses import replace

    with pytest.raises(ValueError, match="malformed signature"):
        eip712.signer_of(1, "0x" + "22" * 20, replace(signed, v=v))
    with pytest.raises(ValueError, match="malformed signature"):
        eip712.signer_of(1, "0x" + "22" * 20, replace(signed, s=b"\xff" * 32))
