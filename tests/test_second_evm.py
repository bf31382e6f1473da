"""The contracts are not Anvil's alone: the chain tests and one study pass on Hardhat's network too.

One pytest run in a subprocess, with ``--evm hardhat`` (tests/conftest.py): the session chain is
Hardhat's network (deploy/hardhat.py) and the contracts are deployed to it by
``python -m deploy contracts``, as an operator deploys to any endpoint. It runs every module of
tests/contracts that uses the chain, the auditor's chain readers, and one whole study on
Flower's simulation engine (tests/federated/test_simulation.py: completed on chain, its round
recorded, each hospital's contribution with its cohort). docs/chains.md lists what is left out
and why.

The verdict is read from the run's JUnit report, not from its exit code alone: every test
passed, none was skipped, every listed module ran at least one test (a path that silently
collected nothing fails here), and the report names Hardhat's network as the chain they ran on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTRACT_TESTS = REPO / "tests" / "contracts"
#: Modules of tests/contracts that never touch a chain (compiler, ABI mirrors, Merkle and EIP-712
#: arithmetic, revert decoding, sealed envelopes): the chain under them changes nothing.
CHAIN_FREE = ("test_abi_mirrors.py", "test_build.py", "test_eip712_digest.py", "test_merkle.py",
              "test_merkle_views.py", "test_reverts.py", "test_sealing.py")
#: Tests of test_chain_errors.py that run without the session chain: no chain at all, a web
#: server, or an Anvil of their own that they stop midway (the launcher's matter, not the EVM's).
#: Its two tests on the session chain run.
CHAIN_ERRORS_WITHOUT_THE_CHAIN = (
    "test_a_chain_that_is_down_is_one_clear_line",
    "test_a_chain_that_goes_away_mid_way_gives_the_same_error",
    "test_a_web_server_that_is_not_a_chain_is_named_as_such",
    "test_a_malformed_url_is_refused_before_connecting",
    "test_settings_refuse_a_malformed_url_when_they_load",
)
#: Besides tests/contracts: the auditor's own chain reads, and one study end to end.
ALSO = ("tests/audit/test_readers.py", "tests/audit/test_role_replay.py", "tests/federated/test_simulation.py")


def _modules() -> list[str]:
    """Every module the run must hold tests of, as JUnit names them (dotted, without .py)."""
    contracts = sorted(p for p in CONTRACT_TESTS.glob("test_*.py") if p.name not in CHAIN_FREE)
    paths = [p.relative_to(REPO).as_posix() for p in contracts] + list(ALSO)
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def _run(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = tmp_path / "report.xml"
    args = ["tests/contracts", *ALSO, "--evm", "hardhat", "-n", "0", "-p", "no:cacheprovider",
            "--basetemp", str(tmp_path / "basetemp"), "--junitxml", str(report), "-o", "junit_family=xunit2"]
    args += [arg for name in CHAIN_FREE for arg in ("--ignore", f"tests/contracts/{name}")]
    args += [arg for name in CHAIN_ERRORS_WITHOUT_THE_CHAIN
             for arg in ("--deselect", f"tests/contracts/test_chain_errors.py::{name}")]
    # The run's own pytest, not this worker's: xdist's variables of this process stay out.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "METAI_"))}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1500)
    return done, report


@pytest.mark.slow
def test_the_chain_tests_and_a_study_pass_on_hardhats_network(tmp_path: Path) -> None:
    done, report = _run(tmp_path)
    assert report.exists(), f"no report (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert (counts["failures"], counts["errors"], counts["skipped"]) == (0, 0, 0), \
        f"{counts}:\n{done.stdout[-6000:]}"
    assert done.returncode == 0, done.stdout[-3000:]

    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["hardhat"]
    assert str(properties.get("evm", "")).startswith(f"HardhatNetwork/{pinned}/"), properties

    modules = _modules()
    ran: dict[str, int] = {}
    for case in suite.iter("testcase"):
        name = case.get("classname", "")
        module = next((m for m in modules if name == m or name.startswith(m + ".")), name)
        ran[module] = ran.get(module, 0) + 1
    missing = [module for module in modules if ran.get(module, 0) == 0]
    assert not missing, f"no test ran from {missing}; ran {ran}"
    assert ran["tests.contracts.test_chain_errors"] == 2
    assert ran["tests.federated.test_simulation"] == 1
    assert counts["tests"] == sum(ran.values())
