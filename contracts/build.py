"""Compile the Solidity sources into the committed ABI + bytecode artifacts.

Run ``python -m contracts.build`` after changing anything under ``contracts/src``; run
``python -m contracts.build --check`` to verify the committed artifacts match a fresh compile.
The compiler is the npm ``solc`` pinned in package.json, driven by py-solc-x through
``solc-shim.cjs``; the compiler version, EVM version and optimizer settings are pinned here so
that every machine produces byte-identical artifacts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import solcx
import solcx.exceptions
import solcx.wrapper

from contracts.errors import BuildError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SOURCES_DIR = PACKAGE_DIR / "src"
ARTIFACTS_DIR = PACKAGE_DIR / "artifacts"
SHIM = PACKAGE_DIR / "solc-shim.cjs"

SOLC_VERSION = "0.8.37"
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200
#: The deployable contracts; everything else under src/ is a library or abstract base.
CONTRACTS = ("ConsortiumRoles", "ConsentRegistry", "DatasetRegistry", "StudyRegistry")


def standard_input() -> dict[str, Any]:
    """Build the solc standard-JSON input for every source under ``contracts/src``.

    Source names are repository-relative so that the metadata (and hence the bytecode) does
    not depend on where the checkout lives.
    """
    sources = {
        f"contracts/src/{p.name}": {"content": p.read_text(encoding="utf-8")}
        for p in sorted(SOURCES_DIR.glob("*.sol"))
    }
    if not sources:
        raise BuildError(f"no Solidity sources found in {SOURCES_DIR}")
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "devdoc", "userdoc"]}},
        },
    }


def _check_toolchain() -> None:
    if shutil.which("node") is None:
        raise BuildError("node is not on PATH; install Node.js 20 (make does it)")
    if not (REPO_ROOT / "node_modules" / "solc" / "package.json").exists():
        raise BuildError("npm solc is missing: run `npm ci` in the repository root (make does it)")


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile the sources and return one artifact dict per deployable contract.

    Raises:
        BuildError: the toolchain is missing, the compiler version differs from the pin, or
            the sources do not compile (the compiler's messages are included).
    """
    _check_toolchain()
    version = str(solcx.wrapper.get_solc_version(SHIM))
    if version != SOLC_VERSION:
        raise BuildError(f"solc {version} found, {SOLC_VERSION} pinned; run `npm ci`")
    try:
        output = solcx.compile_standard(standard_input(), solc_binary=SHIM)
    except solcx.exceptions.SolcError as exc:
        raise BuildError(f"solc failed:\n{exc}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("compilation failed:\n" + "\n".join(e["formattedMessage"] for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for name in CONTRACTS:
        compiled = output["contracts"][f"contracts/src/{name}.sol"][name]
        artifacts[name] = {
            "contractName": name,
            "sourceName": f"contracts/src/{name}.sol",
            "compiler": {
                "solc": SOLC_VERSION,
                "evmVersion": EVM_VERSION,
                "optimizerRuns": OPTIMIZER_RUNS,
            },
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "devdoc": compiled["devdoc"],
            "userdoc": compiled["userdoc"],
        }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """Serialise an artifact exactly as it is committed."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]]) -> list[Path]:
    """Write each artifact to ``contracts/artifacts/<Name>.json`` atomically."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = ARTIFACTS_DIR / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(render(artifact), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def stale_artifacts(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Name the committed artifacts that differ from ``artifacts`` (or are missing)."""
    stale = []
    for name, artifact in artifacts.items():
        path = ARTIFACTS_DIR / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(artifact):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Compile, then write the artifacts or (with --check) compare them with the committed ones."""
    parser = argparse.ArgumentParser(prog="python -m contracts.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_contracts()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        stale = stale_artifacts(artifacts)
        if stale:
            print(f"stale artifacts: {', '.join(stale)}; run python -m contracts.build", file=sys.stderr)
            return 1
        print(f"artifacts up to date ({len(artifacts)} contracts, solc {SOLC_VERSION})")
        return 0
    for path in write_artifacts(artifacts):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
