"""The committed artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import subprocess

from contracts import build


def test_committed_artifacts_match_a_fresh_compile() -> None:
    fresh = build.compile_contracts()
    assert build.stale_artifacts(fresh) == []


def test_shim_reports_the_pinned_compiler() -> None:
    out = subprocess.run([str(build.SHIM), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Version: {build.SOLC_VERSION}+commit." in out


def test_every_custom_error_is_prefixed_by_its_contract() -> None:
    fresh = build.compile_contracts()
    for name, artifact in fresh.items():
        own = [e["name"] for e in artifact["abi"] if e["type"] == "error"]
        foreign_ok = {"AccessControlUnauthorizedAccount", "AccessControlBadConfirmation", "InvalidAccountNonce",
                      "ECDSAInvalidSignature", "ECDSAInvalidSignatureLength", "ECDSAInvalidSignatureS",
                      "InvalidShortString", "StringTooLong", "RoleGatedZeroRegistry", "MerkleProofInvalidMultiproof",
                      # OpenZeppelin's AccessControlDefaultAdminRules and the SafeCast it uses
                      "AccessControlInvalidDefaultAdmin", "AccessControlEnforcedDefaultAdminRules",
                      "AccessControlEnforcedDefaultAdminDelay", "SafeCastOverflowedUintDowncast"}
        assert [e for e in own if not e.startswith(name) and e not in foreign_ok] == []
