"""No command prints a traceback or a secret: every subcommand of every command line, under bad conditions.

The subcommands are enumerated from the Typer apps (``metai-node``, ``python -m deploy``) and
the argparse parsers (``python -m raw_data``, ``python -m node.signer``), so a subcommand added
without cases here fails :func:`test_every_subcommand_has_cases`. Each case runs the command
in a subprocess from a scratch directory, with this worktree on ``PYTHONPATH``, under one bad
condition: missing / short / wrong passphrase, missing node directory, chain down (a closed
loopback port), malformed URL, nonexistent path, and the study / coordinator states that
``deploy study run`` must refuse before it starts anything. Every case must exit non-zero
with exactly one ``error:`` line on stderr naming what is wrong, no ``Traceback``, and none of
the secrets in play (passphrases, keys, the PACS password) anywhere in its output.

The first case of each command line runs in a fresh interpreter (``python -m``); the others are
forked, each a process of its own with its environment, directory and streams, from a server
that has the third-party libraries loaded and no module of this repository
(tests/cli_forkserver.py): a second of CPU less per case.

The chain, nodes, studies and coordinator are real (Anvil from tests/conftest.py); the cases
run four at a time, once per module, and each parametrised test checks one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import typer
from pydicom.data import get_testdata_file

from contracts.chain import Chain
from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.deployer import deploy_contracts
from node.federation_key import supernode_key_pair
from tests.cli_forkserver import ForkServer
from tests.conftest import NODE_PASSPHRASE, Actors, light_keystore, lighten_node_key

REPO = Path(__file__).resolve().parent.parent
TASK = "ct-sinogram-lesion-v1"

# Distinctive secrets: none of them may appear in any output.
SHORT = "ZQXshort7"  # under the 12-character minimum
WRONG = "ZQX-wrong-passphrase-0451"
COORDINATOR_PASSPHRASE = "ZQX-coordinator-passphrase-8812"
COORDINATOR_WRONG = "ZQX-coordinator-wrong-3307"
PACS_PASSWORD = "ZQX-pacs-password-5521"
UNFUNDED_ADMIN_KEY = "0x" + "5a17" * 16
SHORT_ADMIN_KEY = "0x5a17c0de"
SECRETS = (NODE_PASSPHRASE, SHORT, WRONG, COORDINATOR_PASSPHRASE, COORDINATOR_WRONG, PACS_PASSWORD,
           UNFUNDED_ADMIN_KEY, UNFUNDED_ADMIN_KEY.removeprefix("0x"), SHORT_ADMIN_KEY)

REMOVE = None  # an environment override that removes the variable


@dataclass(frozen=True)
class Case:
    """One command under one bad condition. Strings may hold ``{placeholders}`` of :class:`World`."""

    cli: str  # "node", "deploy", "raw_data" or "signer"
    command: tuple[str, ...]
    condition: str
    args: tuple[str, ...]
    expect: str  # a fragment of the error line: what is wrong
    env: Mapping[str, str | None] = field(default_factory=dict)
    starts_nothing: bool = False  # a deploy command that must fail before any process or run directory exists

    @property
    def id(self) -> str:
        return f"{self.cli} {' '.join(self.command)} [{self.condition}]".replace(" []", "")


@dataclass(frozen=True)
class World:
    """The real chain, node, studies and coordinator the cases run against."""

    root: Path
    rpc: str
    closed: str  # a loopback URL nothing listens on
    node_dir: Path
    manifest: Path
    record: str  # a record of the registered dataset image-CT-v1 (image-MR-v1 is a draft)
    requested: int  # a study naming the node, REQUESTED (not RUNNING)
    running: int  # a study naming the node, approved and RUNNING
    coordinator_key: Path
    good_pass: Path
    short_pass: Path
    wrong_pass: Path
    junk: Path  # a file that is not HDF5
    supernode_key: Path  # a SuperNode key (P-384, OpenSSH) kept outside the node directory
    short: Path  # a directory with a short path, for serve's runtime directories (Unix socket paths are short)

    def fmt(self, text: str, case_dir: Path, **extra: str) -> str:
        return text.format(**{k: str(v) for k, v in vars(self).items()}, case=str(case_dir), **extra)


# ---------------------------------------------------------------------- the cases

NODE_OPENING: dict[str, tuple[dict[str, str | None], str]] = {
    "missing passphrase": ({"METAI_NODE_PASSPHRASE": REMOVE}, "METAI_NODE_PASSPHRASE is not set"),
    "short passphrase": ({"METAI_NODE_PASSPHRASE": SHORT}, "METAI_NODE_PASSPHRASE: shorter than 12 characters"),
    "wrong passphrase": ({"METAI_NODE_PASSPHRASE": WRONG}, "wrong passphrase; set METAI_NODE_PASSPHRASE"),
    "missing node directory": ({"METAI_NODE_DIR": "{root}/absent-node"},
                               "node directory {root}/absent-node does not exist; give the directory `metai-node "
                               "init` made, or make one with it; the node directory is METAI_NODE_DIR"),
    "malformed URL": ({"METAI_NODE_RPC_URL": "notaurl"}, "METAI_NODE_RPC_URL: 'notaurl' is not a JSON-RPC URL"),
}
NODE_CHAIN_DOWN: tuple[dict[str, str | None], str] = (
    {"METAI_NODE_RPC_URL": "{closed}"}, "cannot reach the chain at {closed} (connection refused)")
PACS: dict[str, str | None] = {"METAI_NODE_PACS_URL": "{closed}", "METAI_NODE_PACS_USER": "orthanc",
                               "METAI_NODE_PACS_PASSWORD": PACS_PASSWORD}
COORDINATOR: dict[str, str | None] = {"METAI_NODE_COORDINATOR_URL": "{closed}"}

# command -> (arguments, touches the chain, extra environment)
NODE_COMMANDS: dict[str, tuple[tuple[str, ...], bool, dict[str, str | None]]] = {
    "ingest": (("{root}/empty",), False, {}),
    "import-pacs": ((), False, PACS),
    "challenge": (("LOCAL-0001",), False, {}),
    "enrol": (("LOCAL-0001", "0x" + "11" * 20, "0x" + "22" * 65), False, {}),
    "datasets": ((), False, {}),
    "register": (("image-MR-v1",), True, {}),
    "proof": (("image-CT-v1", "{record}"), True, {}),
    "verify": ((), True, {}),
    "studies": ((), True, {}),
    "approve": (("{requested}", "--yes"), True, {}),
    "decline": (("{requested}", "--yes"), True, {}),
    "status": ((), True, {}),
    "publish-proofs": ((), False, COORDINATOR),
    "cohort-manifest": (("--study", "1", "--round", "1"), False, {}),
}


def _node_cases() -> Iterator[Case]:
    for command, (args, chain, extra) in NODE_COMMANDS.items():
        conditions = dict(NODE_OPENING)
        if chain:
            conditions["chain down"] = NODE_CHAIN_DOWN
        for condition, (env, expect) in conditions.items():
            yield Case("node", (command,), condition, args, expect, {**extra, **env})
    init = ("--name", "Errors Hospital", "--manifest", "{manifest}", "--rpc-url", "{rpc}")
    fresh = {"METAI_NODE_DIR": "{case}/new-node"}
    yield Case("node", ("init",), "missing passphrase", init, "METAI_NODE_PASSPHRASE is not set",
               {**fresh, "METAI_NODE_PASSPHRASE": REMOVE})
    yield Case("node", ("init",), "short passphrase", init, "shorter than 12 characters",
               {**fresh, "METAI_NODE_PASSPHRASE": SHORT})
    yield Case("node", ("init",), "malformed URL", (*init[:-1], "notaurl"),
               "--rpc-url 'notaurl' is not a JSON-RPC URL", fresh)
    yield Case("node", ("init",), "malformed URL in the environment", init,
               "METAI_NODE_RPC_URL: 'htp:/127.0.0.1' is not a JSON-RPC URL",
               {**fresh, "METAI_NODE_RPC_URL": "htp:/127.0.0.1"})
    yield Case("node", ("init",), "nonexistent manifest", ("--name", "X", "--manifest", "{root}/absent.json"),
               "--manifest {root}/absent.json does not exist", fresh)
    yield Case("node", ("init",), "nonexistent key file", (*init, "--key-file", "{root}/absent.key"),
               "--key-file {root}/absent.key does not exist", fresh)
    yield Case("node", ("init",), "existing node", init, "already holds a node", {})
    yield Case("node", ("ingest",), "nonexistent path", ("{root}/absent-folder",),
               "PATH {root}/absent-folder does not exist")
    yield Case("node", ("ingest",), "nonexistent labels", ("--labels", "{root}/absent.csv", "{root}/empty"),
               "--labels {root}/absent.csv does not exist")
    yield Case("node", ("approve",), "unknown study", ("99", "--yes"), "study 99 does not exist")
    # No passphrase, no chain: only the node directory must be there.
    yield Case("node", ("federation-key",), "missing node directory", (),
               "node directory {root}/absent-node does not exist; give the directory `metai-node init` made, or make "
               "one with it; the node directory is METAI_NODE_DIR", {"METAI_NODE_DIR": "{root}/absent-node"})
    # backup needs no passphrase: the node directory and --out are what can be wrong.
    yield Case("node", ("backup",), "missing node directory", ("--out", "{case}/b.tar"),
               "node directory {root}/absent-node does not exist; give the directory `metai-node init` made, or make "
               "one with it; the node directory is METAI_NODE_DIR", {"METAI_NODE_DIR": "{root}/absent-node"})
    yield Case("node", ("backup",), "existing output file", ("--out", "{junk}"),
               "--out {junk} exists; give a new file name (a backup never overwrites a file)")
    yield Case("node", ("backup",), "nonexistent output folder", ("--out", "{root}/absent/b.tar"),
               "the folder of --out does not exist ({root}/absent); create it first")
    yield Case("node", ("restore",), "nonexistent archive", ("{root}/absent.tar", "--dir", "{case}/restored"),
               "backup {root}/absent.tar does not exist or is not a file")
    yield Case("node", ("restore",), "not a backup", ("{junk}", "--dir", "{case}/restored"),
               "{junk} is not a node backup: it cannot be read as a tar archive")
    yield Case("node", ("restore",), "non-empty target", ("{junk}", "--dir", "{root}"),
               "--dir {root} is not empty; restore into a new or empty directory")
    yield Case("node", ("restore",), "short passphrase", ("{junk}", "--dir", "{case}/restored", "--check-passphrase"),
               "METAI_NODE_PASSPHRASE: shorter than 12 characters", {"METAI_NODE_PASSPHRASE": SHORT})
    yield Case("node", ("decline",), "decided study", ("{running}", "--yes"),
               "study {running} is not awaiting this hospital's decision: it was already approved")
    yield Case("node", ("import-pacs",), "PACS URL unset", (), "METAI_NODE_PACS_URL is not set")
    yield Case("node", ("import-pacs",), "malformed PACS URL", (), "PACS URL 'notaurl' is not an http(s) URL",
               {**PACS, "METAI_NODE_PACS_URL": "notaurl"})
    yield Case("node", ("import-pacs",), "PACS down", (), "cannot reach the PACS at {closed}", PACS)
    yield Case("node", ("publish-proofs",), "coordinator URL unset", (), "METAI_NODE_COORDINATOR_URL is not set")
    yield Case("node", ("publish-proofs",), "malformed coordinator URL", (),
               "METAI_NODE_COORDINATOR_URL: expected the coordinator's http(s) URL",
               {"METAI_NODE_COORDINATOR_URL": "notaurl"})
    yield Case("node", ("publish-proofs",), "coordinator down", (), "the coordinator at {closed} cannot be reached",
               COORDINATOR)
    yield from _serve_cases()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_env(name: str, **overrides: str | None) -> dict[str, str | None]:
    """A serve of the world's node against a loopback SuperLink where nothing listens, its files in the case."""
    env: dict[str, str | None] = {
        "METAI_NODE_SUPERLINK_ADDRESS": SERVE_SUPERLINK, "METAI_NODE_SUPERLINK_INSECURE": "true",
        "METAI_NODE_RUNTIME_DIR": f"{{short}}/{name}", "METAI_NODE_LOG_DIR": "{case}/logs",
        "METAI_NODE_HEALTH_PORT": str(_unused_port()), "METAI_NODE_SUPERNODE_PORT": str(_unused_port())}
    env.update(overrides)
    return env


SERVE_SUPERLINK = f"127.0.0.1:{_unused_port()}"
TLS = {"METAI_NODE_SUPERLINK_INSECURE": REMOVE, "METAI_NODE_SUPERNODE_KEY": "{supernode_key}"}


def _serve_cases() -> Iterator[Case]:
    conditions = {**NODE_OPENING, "chain down": NODE_CHAIN_DOWN}
    for index, (condition, (env, expect)) in enumerate(conditions.items()):
        yield Case("node", ("serve",), condition, (), expect, {**_serve_env(f"o{index}"), **env})
    yield Case("node", ("serve",), "SuperLink address unset", (), "METAI_NODE_SUPERLINK_ADDRESS is not set",
               _serve_env("a", METAI_NODE_SUPERLINK_ADDRESS=REMOVE, METAI_NODE_SUPERLINK_INSECURE=REMOVE))
    yield Case("node", ("serve",), "CA certificate unset", (), "METAI_NODE_SUPERLINK_ROOT_CERTIFICATES is not set",
               _serve_env("b", **TLS))
    yield Case("node", ("serve",), "plain HTTP to another host", (),
               "METAI_NODE_SUPERLINK_INSECURE: the SuperLink at 10.77.0.2:9443 is not on loopback, so it must be "
               "reached over TLS", _serve_env("c", METAI_NODE_SUPERLINK_ADDRESS="10.77.0.2:9443"))
    yield Case("node", ("serve",), "missing SuperNode key", (),
               "the SuperNode key {node_dir}/federation/supernode.key does not exist; run `metai-node federation-key`",
               _serve_env("d", **{**TLS, "METAI_NODE_SUPERNODE_KEY": REMOVE,
                                  "METAI_NODE_SUPERLINK_ROOT_CERTIFICATES": "{junk}"}))
    yield Case("node", ("serve",), "missing CA certificate", (),
               "METAI_NODE_SUPERLINK_ROOT_CERTIFICATES is {root}/absent-ca.pem, which does not exist",
               _serve_env("e", **TLS, METAI_NODE_SUPERLINK_ROOT_CERTIFICATES="{root}/absent-ca.pem"))
    yield Case("node", ("serve",), "CA certificate not PEM", (), "{junk} is not a PEM certificate",
               _serve_env("f", **TLS, METAI_NODE_SUPERLINK_ROOT_CERTIFICATES="{junk}"))
    yield Case("node", ("serve",), "SuperLink down", (),
               f"cannot reach the SuperLink at {SERVE_SUPERLINK} (connection refused); check "
               "METAI_NODE_SUPERLINK_ADDRESS", _serve_env("g"))
    quiet = _unused_port()
    yield Case("node", ("health",), "nothing answers", (), f"no health check answers on 127.0.0.1:{quiet} "
               "(connection refused); is `metai-node serve` running", {"METAI_NODE_HEALTH_PORT": str(quiet)})
    yield Case("node", ("health",), "malformed port", (),
               "METAI_NODE_HEALTH_PORT: Input should be greater than or equal to 1", {"METAI_NODE_HEALTH_PORT": "0"})


NODE_ARG = "{node_dir}={good_pass}"
RUN_NODE_CONDITIONS: dict[str, tuple[str, dict[str, str | None], str]] = {
    "missing node directory": ("{root}/absent-node={good_pass}", {},
                               "node directory {root}/absent-node does not exist"),
    "nonexistent passphrase file": ("{node_dir}={root}/absent.pass", {},
                                    "passphrase file {root}/absent.pass of node {node_dir} does not exist"),
    "short passphrase": ("{node_dir}={short_pass}", {}, "holds fewer than 12 characters"),
    "wrong passphrase": ("{node_dir}={wrong_pass}", {}, "does not unlock node {node_dir}"),
    "missing coordinator passphrase": (NODE_ARG, {"METAI_COORDINATOR_PASSPHRASE": REMOVE},
                                       "METAI_COORDINATOR_PASSPHRASE is not set; set it to the passphrase of the "
                                       "coordinator's keystore"),
    "short coordinator passphrase": (NODE_ARG, {"METAI_COORDINATOR_PASSPHRASE": SHORT},
                                     "METAI_COORDINATOR_PASSPHRASE: shorter than 12 characters"),
    "wrong coordinator passphrase": (NODE_ARG, {"METAI_COORDINATOR_PASSPHRASE": COORDINATOR_WRONG},
                                     "METAI_COORDINATOR_PASSPHRASE does not unlock the coordinator's key"),
    "chain down": (NODE_ARG, {"METAI_COORDINATOR_RPC_URL": "{closed}"},
                   "cannot reach the chain at {closed} (connection refused)"),
    "malformed URL": (NODE_ARG, {"METAI_COORDINATOR_RPC_URL": "http//127.0.0.1:8545"},
                      "METAI_COORDINATOR_RPC_URL: 'http//127.0.0.1:8545' is not a JSON-RPC URL"),
    "node's chain down": (NODE_ARG, {"METAI_NODE_RPC_URL": "{closed}"},
                          "cannot reach the chain at {closed} (connection refused)"),
    "nonexistent coordinator key": (NODE_ARG, {"METAI_COORDINATOR_KEY_FILE": "{root}/absent-key.json"},
                                    "METAI_COORDINATOR_KEY_FILE is {root}/absent-key.json, which does not exist"),
}


def _deploy_cases() -> Iterator[Case]:
    yield Case("deploy", ("chain", "start"), "run directory is a file", (), "check the path",
               {"METAI_RUN_DIR": "{junk}"})
    yield Case("deploy", ("chain", "start"), "port in use", ("--port", "{busy_port}"), "anvil exited with")
    yield Case("deploy", ("chain", "stop"), "no chain recorded", (), "no running chain recorded in {case}/run")
    contracts = {"METAI_RPC_URL": "{rpc}", "METAI_ADMIN_KEY": UNFUNDED_ADMIN_KEY}
    yield Case("deploy", ("contracts",), "missing admin key", (), "METAI_ADMIN_KEY is not set",
               {**contracts, "METAI_ADMIN_KEY": REMOVE})
    yield Case("deploy", ("contracts",), "short admin key", (), "METAI_ADMIN_KEY: must be 32 bytes of hex",
               {**contracts, "METAI_ADMIN_KEY": SHORT_ADMIN_KEY})
    yield Case("deploy", ("contracts",), "wrong admin key", (), "holds no ether on {rpc}", contracts)
    yield Case("deploy", ("contracts",), "chain down", (), "cannot reach the chain at {closed} (connection refused)",
               {**contracts, "METAI_RPC_URL": "{closed}"})
    yield Case("deploy", ("contracts",), "malformed URL", (), "METAI_RPC_URL: 'notaurl' is not a JSON-RPC URL",
               {**contracts, "METAI_RPC_URL": "notaurl"})
    yield Case("deploy", ("contracts",), "URL unset", (), "METAI_RPC_URL is not set",
               {**contracts, "METAI_RPC_URL": REMOVE})
    yield Case("deploy", ("demo",), "run directory is a file", (), "check the path", {"METAI_RUN_DIR": "{junk}"})
    for command in (("federation", "status"), ("federation", "down"), ("study", "launch")):
        args = ("--study-id", "{running}") if command == ("study", "launch") else ()
        yield Case("deploy", command, "no federation", args, "no federation is recorded in {case}/run/federation")
    one = ("--set", "min-nodes=1")  # the app's default is 2; these cases are about something else
    for condition, (node, env, expect) in RUN_NODE_CONDITIONS.items():
        yield Case("deploy", ("federation", "up"), condition, ("--node", node), expect, env, starts_nothing=True)
        for command in (("study", "run"), ("study", "simulate")):
            yield Case("deploy", command, condition, ("--study-id", "{running}", "--node", node, *one), expect, env,
                       starts_nothing=True)
    for command in (("study", "run"), ("study", "simulate")):
        yield Case("deploy", command, "study not running", ("--study-id", "{requested}", "--node", NODE_ARG, *one),
                   "study {requested} is REQUESTED, not RUNNING", starts_nothing=True)
        yield Case("deploy", command, "unknown study", ("--study-id", "999", "--node", NODE_ARG, *one),
                   "there is no study 999 on the chain at {rpc}", starts_nothing=True)
        yield Case("deploy", command, "more min-nodes than nodes", ("--study-id", "{running}", "--node", NODE_ARG),
                   "the run config asks for min-nodes=2 but 1 node is given", starts_nothing=True)
        yield Case("deploy", command, "unknown task", ("--study-id", "{running}", "--node", NODE_ARG, *one,
                                                       "--set", "task=no-such-task"),
                   "no task 'no-such-task'", starts_nothing=True)
    yield Case("deploy", ("certs", "ca"), "output is a file", ("--out", "{junk}"),
               "{junk}: File exists; check the path")
    yield Case("deploy", ("certs", "server"), "no CA", ("--ca", "{root}/absent-ca", "--out", "{case}/tls", "--ip",
                                                       "10.77.0.2"),
               "{root}/absent-ca/ca.pem does not exist; make the CA first")
    yield Case("deploy", ("study", "simulate"), "no passphrase file", ("--study-id", "{running}", "--node",
                                                                        "{node_dir}", *one),
               "has no passphrase file", starts_nothing=True)


def _raw_data_cases() -> Iterator[Case]:
    yield Case("raw_data", ("compare",), "nonexistent output folder", ("--size", "16", "--out", "{root}/absent/c.png"),
               "the folder of --out does not exist ({root}/absent)")
    yield Case("raw_data", ("compare",), "unknown profile", ("--size", "16", "--profiles", "nope",
                                                             "--out", "{case}/c.png"), "no scanner profile 'nope'")
    yield Case("raw_data", ("scan",), "nonexistent DICOM", ("--dicom", "{root}/absent.dcm", "--profile",
                                                            "compact-head", "--out", "{case}/s.h5"),
               "{root}/absent.dcm: no such file")
    yield Case("raw_data", ("scan",), "nonexistent output folder", ("--patient-seed", "1", "--profile",
                                                                    "compact-head", "--out", "{root}/absent/s.h5"),
               "the folder of --out does not exist ({root}/absent)")
    yield Case("raw_data", ("info",), "nonexistent path", ("{root}/absent.h5",), "{root}/absent.h5: no such file")
    yield Case("raw_data", ("info",), "not HDF5", ("{junk}",), "{junk}: cannot be read as HDF5")


def _signer_cases() -> Iterator[Case]:
    base = ("--socket", "{case}/agent/agent.sock")
    yield Case("signer", (), "missing node directory", ("--node-dir", "{root}/absent-node", "--passphrase-file",
                                                        "{good_pass}", *base),
               "node directory {root}/absent-node does not exist")
    yield Case("signer", (), "nonexistent passphrase file", ("--node-dir", "{node_dir}", "--passphrase-file",
                                                             "{root}/absent.pass", *base),
               "{root}/absent.pass: No such file or directory")
    yield Case("signer", (), "wrong passphrase", ("--node-dir", "{node_dir}", "--passphrase-file", "{wrong_pass}",
                                                  *base), "wrong passphrase; write the node's passphrase")
    yield Case("signer", (), "short passphrase", ("--node-dir", "{node_dir}", "--passphrase-file", "{short_pass}",
                                                  *base), "wrong passphrase; write the node's passphrase")
    yield Case("signer", (), "chain down", ("--node-dir", "{node_dir}", "--passphrase-file", "{good_pass}", *base),
               "cannot reach the chain at {closed} (connection refused); is it running? check METAI_NODE_RPC_URL",
               {"METAI_NODE_RPC_URL": "{closed}"})
    yield Case("signer", (), "malformed URL", ("--node-dir", "{node_dir}", "--passphrase-file", "{good_pass}", *base),
               "METAI_NODE_RPC_URL: 'notaurl' is not a JSON-RPC URL", {"METAI_NODE_RPC_URL": "notaurl"})


CASES = [*_node_cases(), *_deploy_cases(), *_raw_data_cases(), *_signer_cases()]
#: Subcommands no bad condition applies to (they take no input); run once to see them succeed.
NO_BAD_INPUT = {("raw_data", ("profiles",))}


# ---------------------------------------------------------------------- enumerating the command lines


def _typer_commands(app: typer.Typer) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.add(path)

    walk(typer.main.get_command(app), ())
    return found


def _argparse_commands(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {(name,) for action in subparsers for name in action.choices} or {()}


def enumerate_commands() -> set[tuple[str, tuple[str, ...]]]:
    """Every (command line, subcommand path) of the project."""
    from deploy.__main__ import app as deploy_app
    from node.cli import app as node_app
    from raw_data.__main__ import _parser as raw_data_parser

    signer = argparse.ArgumentParser()  # python -m node.signer has no subcommands
    commands = {("node", c) for c in _typer_commands(node_app)}
    commands |= {("deploy", c) for c in _typer_commands(deploy_app)}
    commands |= {("raw_data", c) for c in _argparse_commands(raw_data_parser())}
    commands |= {("signer", c) for c in _argparse_commands(signer)}
    return commands


def test_every_subcommand_has_cases() -> None:
    covered = {(case.cli, case.command) for case in CASES} | NO_BAD_INPUT
    assert enumerate_commands() - covered == set(), "subcommands without a bad-condition case"
    assert covered - enumerate_commands() == set(), "cases for subcommands that no longer exist"


# ---------------------------------------------------------------------- the world and the runs

MODULES = {"node": "node.cli", "deploy": "deploy", "raw_data": "raw_data", "signer": "node.signer"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, chain: Chain, actors: Actors) -> Iterator[World]:
    from node.datasets import register
    from node.ingest import Ingestor
    from node.node import Node
    from tasks import task_code_hash

    root = tmp_path_factory.mktemp("cli-errors")
    deployment = deploy_contracts(chain, actors.admin, initial_roles=[
        (Role.RESEARCHER, actors.researcher.address), (Role.COORDINATOR, actors.coordinator.address)])
    exchange = Exchange(chain, deployment)
    manifest = root / "deployment.json"
    write_manifest(deployment, manifest)
    node = Node.init(root / "node", hospital_name="Errors Hospital", rpc_url=chain.rpc_url, manifest=manifest,
                     passphrase=NODE_PASSPHRASE)
    lighten_node_key(node.dir)
    chain.send_value(actors.admin, node.address, 10**18)
    exchange.roles.grant(actors.admin, Role.HOSPITAL, node.address)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        folder = root / f"in-{name}"
        folder.mkdir()
        shutil.copy(str(get_testdata_file(name)), folder)
        (ingested,) = Ingestor(node).run([folder]).ingested
        if name == "CT_small.dcm":
            register(node, "image-CT-v1")
            record = ingested[1]
    request = StudyRequest(purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(node.address,),
                           task_code_hash=task_code_hash(TASK), rounds=1)
    requested, _ = exchange.studies.request(actors.researcher, request)
    running, _ = exchange.studies.request(actors.researcher, request)
    exchange.studies.approve(node.account, running)
    exchange.studies.start(actors.coordinator, running)
    key = root / "coordinator-key.json"
    key.write_text(light_keystore(actors.coordinator.key, COORDINATOR_PASSPHRASE))
    passes = {}
    for kind, value in (("good", NODE_PASSPHRASE), ("short", SHORT), ("wrong", WRONG)):
        passes[kind] = root / f"{kind}.pass"
        passes[kind].write_text(value + "\n")
        passes[kind].chmod(0o600)
    (root / "empty").mkdir()
    junk = root / "junk.h5"
    junk.write_bytes(b"not HDF5 at all\n")
    supernode_key = root / "supernode.key"
    supernode_key.write_bytes(supernode_key_pair()[0])
    supernode_key.chmod(0o600)
    short = Path(tempfile.mkdtemp(prefix="cli-"))
    yield World(root=root, rpc=chain.rpc_url, closed=f"http://127.0.0.1:{_closed_port()}", node_dir=node.dir,
                manifest=manifest, record=record, requested=int(requested), running=int(running),
                coordinator_key=key, good_pass=passes["good"], short_pass=passes["short"],
                wrong_pass=passes["wrong"], junk=junk, supernode_key=supernode_key, short=short)
    shutil.rmtree(short, ignore_errors=True)


@dataclass(frozen=True)
class Outcome:
    case: Case
    case_dir: Path
    returncode: int | None  # None: still running after CASE_TIMEOUT seconds (then killed)
    stdout: str
    stderr: str
    leftover_processes: tuple[str, ...]  # processes of the case still running after it ended (then killed)
    fresh: bool = True  # run as `python -m` (else forked by tests/cli_forkserver.py)


CASE_TIMEOUT = 120.0  # seconds; every case answers in a few once fixed


def _base_env(world: World, case_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env.update({
        "PYTHONPATH": str(REPO),
        "METAI_RUN_DIR": str(case_dir / "run"),
        "METAI_NODE_DIR": str(world.node_dir),
        "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
        "METAI_COORDINATOR_RPC_URL": world.rpc,
        "METAI_COORDINATOR_MANIFEST": str(world.manifest),
        "METAI_COORDINATOR_KEY_FILE": str(world.coordinator_key),
        "METAI_COORDINATOR_PASSPHRASE": COORDINATOR_PASSPHRASE,
        "METAI_COORDINATOR_MODEL_DIR": str(case_dir / "models"),
    })
    return env


def _processes_mentioning(text: str) -> dict[int, str]:
    """Processes whose command line or environment holds ``text``: a case's descendants all inherit its
    METAI_RUN_DIR, even those whose arguments name no path of the case (a signing agent's socket is elsewhere)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:  # gone, or another user's
            continue
        if text in cmdline or text in environ:
            found[int(proc.name)] = cmdline
    return found


def run_case(world: World, case: Case, busy_port: int, server: ForkServer | None) -> Outcome:
    """Run ``case`` in its own directory and session; kill whatever of it outlives it (a command that wrongly
    succeeded may leave a federation or an agent running).

    In a fresh interpreter (``python -m``) when ``server`` is None, else forked by ``server``
    (tests/cli_forkserver.py: the same command line, without paying for the libraries' imports again).
    """
    case_dir = world.root / "cases" / case.id.replace(" ", "_").replace("/", "_")
    case_dir.mkdir(parents=True)
    env = _base_env(world, case_dir)
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = world.fmt(value, case_dir)
    args = [world.fmt(a, case_dir, busy_port=str(busy_port)) for a in case.args]
    returncode: int | None
    if server is None:
        cmd = [sys.executable, "-m", MODULES[case.cli], *case.command, *args]
        proc = subprocess.Popen(cmd, cwd=case_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=CASE_TIMEOUT)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            returncode = None
    else:
        streams = case_dir.parent / f"{case_dir.name}.stdout", case_dir.parent / f"{case_dir.name}.stderr"
        returncode = server.run(MODULES[case.cli], [*case.command, *args], env=env, cwd=case_dir,
                                stdout=streams[0], stderr=streams[1], timeout=CASE_TIMEOUT)
        stdout, stderr = (path.read_text(errors="replace") for path in streams)
    leftovers = _processes_mentioning(str(case_dir))
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return Outcome(case, case_dir, returncode, stdout, stderr, tuple(leftovers.values()), fresh=server is None)


#: The cases run in a fresh interpreter: the first of each command line (the rest are forked).
FRESH = frozenset(next(case.id for case in CASES if case.cli == cli) for cli in MODULES)


@pytest.fixture(scope="module")
def outcomes(world: World) -> dict[str, Outcome]:
    """Every case, run four at a time."""
    server = ForkServer({**{k: v for k, v in os.environ.items() if not k.startswith("METAI_")},
                         "PYTHONPATH": str(REPO)})
    try:
        with socket.socket() as busy:  # a port that is taken, for `chain start --port`
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = int(busy.getsockname()[1])
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(
                    lambda case: run_case(world, case, port, None if case.id in FRESH else server), CASES))
    finally:
        server.close()
    return {outcome.case.id: outcome for outcome in results}


def test_each_command_line_also_fails_right_in_a_fresh_interpreter(outcomes: dict[str, Outcome]) -> None:
    # The forked cases skip the interpreter's start; one case of each command line runs as `python -m`.
    assert {o.case.cli for o in outcomes.values() if o.fresh} == set(MODULES)
    assert sum(o.fresh for o in outcomes.values()) == len(MODULES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_command_fails_with_one_line_and_no_secret(case: Case, outcomes: dict[str, Outcome], world: World) -> None:
    outcome = outcomes[case.id]
    shown = f"exit {outcome.returncode}\n--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}"
    everything = outcome.stdout + outcome.stderr
    assert outcome.returncode is not None, f"still running after {CASE_TIMEOUT:g} s\n{shown}"
    assert outcome.returncode != 0, shown
    assert "Traceback" not in everything, shown
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    expected = world.fmt(case.expect, outcome.case_dir)
    assert expected in lines[0], f"expected {expected!r}\n{shown}"
    for secret in SECRETS:
        assert secret not in everything, f"secret {secret!r} in the output\n{shown}"
    if case.command == ("init",) and case.condition != "existing node":
        assert not (outcome.case_dir / "new-node").exists(), "a refused init left a node directory"
    if case.starts_nothing:
        assert not (outcome.case_dir / "run" / "federation").exists(), "a federation directory was made"
        assert not (outcome.case_dir / "models").exists()
    assert outcome.leftover_processes == (), "processes of this case outlived it"


@pytest.mark.parametrize(("cli", "command"), sorted(NO_BAD_INPUT))
def test_commands_without_input_succeed(cli: str, command: tuple[str, ...], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")} | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", MODULES[cli], *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.strip()


# ---------------------------------------------------------------------- the boundary's other promises


def _all_typers(app: typer.Typer) -> Iterator[typer.Typer]:
    yield app
    for group in app.registered_groups:
        if group.typer_instance is not None:
            yield from _all_typers(group.typer_instance)


def test_no_typer_app_shows_local_variables() -> None:
    from deploy.__main__ import app as deploy_app
    from node.cli import app as node_app

    apps = [*_all_typers(node_app), *_all_typers(deploy_app)]
    assert len(apps) == 6
    assert [a.pretty_exceptions_show_locals for a in apps] == [False] * 6


def test_debug_prints_a_plain_traceback_without_locals_or_secrets(world: World, tmp_path: Path) -> None:
    env = _base_env(world, tmp_path) | {"METAI_NODE_PASSPHRASE": WRONG, "METAI_DEBUG": "1"}
    done = subprocess.run([sys.executable, "-m", "node.cli", "status"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):"), done.stderr
    assert "node.errors.KeyStoreError: cannot unlock" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot unlock")
    assert "locals" not in done.stderr  # no rich panel of local variables
    assert "│" not in done.stderr
    assert WRONG not in done.stdout + done.stderr


def test_an_unexpected_error_is_one_line_asking_for_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import node.cli
    import node.cli.common

    def broken() -> object:  # stands for a bug anywhere in a command: the boundary is what is tested
        raise RuntimeError(f"boom while holding {WRONG}\nsecond line")

    monkeypatch.setattr(node.cli.common, "settings", broken)
    result = CliRunner().invoke(node.cli.app, ["status"], env={"METAI_NODE_PASSPHRASE": WRONG})
    assert result.exit_code == 1
    assert result.output == ("error: unexpected RuntimeError (boom while holding ***: ... second line (1 line "
                             "quoted with METAI_DEBUG=1)): this is a bug; please report it with the output of the "
                             "same command run with METAI_DEBUG=1\n")


def test_bracketed_text_in_paths_and_names_is_printed_as_is(world: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from node.cli import app

    node_dir = tmp_path / "node [red]x[/]"  # rich would take the brackets for markup and drop them
    env = {"METAI_NODE_DIR": str(node_dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE, "METAI_NODE_RPC_URL": world.rpc}
    init = CliRunner().invoke(app, ["init", "--name", "St [bold]Mary[/]", "--manifest", str(world.manifest)], env=env)
    assert init.exit_code == 0, init.output
    assert f"node created in {node_dir}; hospital address 0x" in init.output
    status = CliRunner().invoke(app, ["status"], env=env)
    assert f"node {node_dir}: St [bold]Mary[/] (0x" in status.output


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import deploy.__main__

    def interrupted() -> object:  # what Ctrl-C raises wherever the command happens to be
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy.__main__, "_federation_dir", interrupted)
    result = CliRunner().invoke(deploy.__main__.app, ["federation", "status"])
    assert (result.exit_code, result.output) == (130, "error: interrupted (Ctrl-C)\n")


def test_a_missing_role_is_named_with_what_to_do(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from node.ingest import Ingestor

    node = make_node("Roleless Hospital", role=False)
    (tmp_path / "in").mkdir()
    shutil.copy(str(get_testdata_file("CT_small.dcm")), tmp_path / "in")
    Ingestor(node).run([tmp_path / "in"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env |= {"PYTHONPATH": str(REPO), "METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE}
    done = subprocess.run([sys.executable, "-m", "node.cli", "register", "image-CT-v1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: AccessControlUnauthorizedAccount(account='{node.address}', neededRole=HOSPITAL) in DatasetRegistry; "
        f"ask the consortium admin to grant {node.address} the HOSPITAL role\n"
    )


def test_the_signing_agent_takes_the_chain_from_metai_node_rpc_url(  # type: ignore[no-untyped-def]
        exchange, actors, chain: Chain, tmp_path: Path) -> None:
    from node.node import Node
    from node.signer import RemoteSigner

    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    elsewhere = f"http://127.0.0.1:{_closed_port()}"  # what node.json records: nothing listens there
    node = Node.init(tmp_path / "node", hospital_name="Moved Hospital", rpc_url=elsewhere, manifest=manifest,
                     passphrase=NODE_PASSPHRASE)
    lighten_node_key(node.dir)
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE)
    socket_path = tmp_path / "agent" / "agent.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env |= {"PYTHONPATH": str(REPO), "METAI_NODE_RPC_URL": chain.rpc_url}
    agent = subprocess.Popen([sys.executable, "-m", "node.signer", "--node-dir", str(node.dir), "--passphrase-file",
                              str(secret), "--socket", str(socket_path)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        first = agent.stdout.readline()  # "ready <socket>" once it has unlocked the key and reached the chain
        assert first == f"ready {socket_path}\n", agent.stderr.read() if agent.stderr else ""
        assert RemoteSigner(socket_path).address == node.address
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert agent.returncode == 0
    assert not socket_path.exists()
