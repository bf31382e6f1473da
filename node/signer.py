"""A signing agent for a hospital node: the hospital key, unlocked once, in a long-lived process.

Flower starts a new ClientApp process for every message, so a node that unlocks its key in
the ClientApp pays the keystore's scrypt (about 0.7 s here) every round; the resident worker of
node/federated/ keeps one process, but that process runs the code the run brought, and the key
is better kept out of it. The agent unlocks it once, next to the SuperNode, and signs for the
ClientApps over a Unix socket (never a network port): the socket's directory is private to its
owner (mode 0700) and every connection must prove it knows a random key kept beside it (mode
0600). The ClientApp gets the socket's path from its node config (``signer-socket``).

The agent signs only what a round needs: a call of ``contribute`` on the deployment's
StudyRegistry, on the node's chain, with no value. Anything else is refused and logged, so a
ClientApp that runs the wrong code cannot spend the hospital's funds or sign in its name
elsewhere.

Run: ``python -m node.signer --node-dir DIR [--passphrase-file FILE] --socket PATH`` (stops on
SIGTERM or Ctrl-C, removing its socket and key file). Without a passphrase file it takes the
passphrase from ``METAI_NODE_PASSPHRASE`` (``metai-node serve`` starts it so). Like every node
process it takes the chain URL from ``METAI_NODE_RPC_URL`` when set, else from the node
directory's ``node.json``.
An error is one line on stderr (the node's error boundary, :mod:`node.cli.boundary`).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

from eth_utils.abi import function_abi_to_4byte_selector
from hexbytes import HexBytes
from web3 import Web3

from node.errors import KeyStoreError, NodeError
from node.exit_codes import ExitCode

log = logging.getLogger("metai.node.signer")
KEY_SUFFIX = ".key"


class SignerError(NodeError, RuntimeError):
    """The signing agent is unreachable, or refused to sign (the message says why)."""


@dataclass(frozen=True)
class SignedTx:
    """What ``Chain`` needs of a signed transaction."""

    raw_transaction: HexBytes
    hash: HexBytes


class RemoteSigner:
    """A stand-in for the hospital's LocalAccount that asks the agent at ``socket_path`` to sign."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.address = str(self._call(("address",)))

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx:
        """Have the agent sign ``tx``.

        Raises:
            SignerError: the agent refused (not a contribution to this deployment) or is down.
        """
        raw, tx_hash = self._call(("sign", dict(tx)))
        return SignedTx(HexBytes(raw), HexBytes(tx_hash))

    def _call(self, request: tuple[Any, ...]) -> Any:
        try:
            authkey = Path(str(self.socket_path) + KEY_SUFFIX).read_bytes()
            with Client(str(self.socket_path), family="AF_UNIX", authkey=authkey) as conn:
                conn.send(request)
                ok, value = conn.recv()
        except (OSError, EOFError, AuthenticationError) as exc:
            raise SignerError(f"signing agent at {self.socket_path} is not reachable: {exc}") from exc
        if not ok:
            raise SignerError(f"signing agent at {self.socket_path} refused: {value}")
        return value


class SigningAgent:
    """Holds the unlocked key and answers ``address`` and ``sign`` requests for contributions.

    Parameters:
        node_dir, passphrase: the node and what unlocks it.
        rpc_url: the chain, overriding the one ``node.json`` records (``METAI_NODE_RPC_URL``).
    """

    def __init__(self, node_dir: Path, passphrase: str, *, rpc_url: str | None = None) -> None:
        from node.node import Node

        node = Node(node_dir, passphrase, rpc_url=rpc_url)
        self.account = node.account  # the one scrypt unlock
        self.rpc_url = node.rpc_url
        studies = node.exchange.studies
        self.chain_id = node.exchange.chain.chain_id
        self.registry = Web3.to_checksum_address(studies.address)
        entry = next(e for e in studies.contract.abi if e.get("type") == "function" and e.get("name") == "contribute")
        self.selector = function_abi_to_4byte_selector(entry)

    def check(self, tx: dict[str, Any]) -> None:
        """Raise SignerError unless ``tx`` is a contribution of this hospital on this deployment."""
        to = tx.get("to")
        if not to or Web3.to_checksum_address(to) != self.registry:
            raise SignerError(f"transaction to {to} is not to the StudyRegistry {self.registry}")
        if bytes(HexBytes(tx.get("data", b"")))[:4] != self.selector:
            raise SignerError("transaction is not a call of contribute")
        if int(tx.get("value", 0)) != 0:
            raise SignerError("a contribution carries no value")
        if int(tx.get("chainId", -1)) != self.chain_id:
            raise SignerError(f"chain id {tx.get('chainId')} is not the node's chain ({self.chain_id})")
        if Web3.to_checksum_address(tx.get("from", self.account.address)) != self.account.address:
            raise SignerError(f"transaction is from {tx.get('from')}, not this hospital")

    def answer(self, request: Any) -> tuple[bool, Any]:
        """Answer one request: ``(True, value)`` or ``(False, reason)``."""
        if request == ("address",):
            return True, self.account.address
        if isinstance(request, tuple) and len(request) == 2 and request[0] == "sign" and isinstance(request[1], dict):
            try:
                self.check(request[1])
            except SignerError as exc:
                log.warning("refused to sign: %s", exc)
                return False, str(exc)
            signed = self.account.sign_transaction(request[1])
            log.info("signed a contribution: transaction %s", Web3.to_hex(signed.hash))
            return True, (bytes(signed.raw_transaction), bytes(signed.hash))
        return False, "unknown request"

    def serve(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` until SIGTERM or Ctrl-C; remove the socket and key file after."""
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        socket_path.parent.chmod(0o700)
        key_file = Path(str(socket_path) + KEY_SUFFIX)
        authkey = secrets.token_bytes(32)
        socket_path.unlink(missing_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(authkey)
        listener = Listener(str(socket_path), family="AF_UNIX", authkey=authkey)
        signal.signal(signal.SIGTERM, _interrupt)
        log.info("signing agent for %s on chain %s (id %s) listening on %s", self.account.address, self.rpc_url,
                 self.chain_id, socket_path)
        print(f"ready {socket_path}", flush=True)
        try:
            while True:
                try:
                    conn = listener.accept()
                except (OSError, EOFError, AuthenticationError) as exc:  # e.g. a client with the wrong key
                    log.warning("connection refused: %s", exc)
                    continue
                with conn:
                    try:
                        conn.send(self.answer(conn.recv()))
                    except (OSError, EOFError) as exc:
                        log.warning("connection dropped: %s", exc)
        except KeyboardInterrupt:
            pass
        finally:
            listener.close()
            key_file.unlink(missing_ok=True)
            socket_path.unlink(missing_ok=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Command line: unlock the node's key and serve until stopped; an error is one line on stderr."""
    from contracts.errors import ChainUnavailable, InvalidRpcUrl
    from node.cli.boundary import Boundary
    from node.config import NodeSettings

    parser = argparse.ArgumentParser(prog="python -m node.signer", description=__doc__.splitlines()[0])
    parser.add_argument("--node-dir", type=Path, required=True)
    parser.add_argument("--passphrase-file", type=Path, help="a file holding the passphrase (default: "
                        "METAI_NODE_PASSPHRASE)")
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket path (its directory becomes 0700)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def hint(exc: BaseException) -> str | None:
        if isinstance(exc, KeyStoreError) and "wrong passphrase" in str(exc):
            if args.passphrase_file is None:
                return "set METAI_NODE_PASSPHRASE to the passphrase given to `metai-node init`"
            return f"write the node's passphrase (the one given to `metai-node init`) in {args.passphrase_file}"
        if isinstance(exc, ChainUnavailable | InvalidRpcUrl):
            return "check METAI_NODE_RPC_URL, or the rpc_url in the node's node.json"
        return None

    boundary = Boundary(settings=(NodeSettings,), hints=(hint,))
    try:
        settings = NodeSettings()
        if args.passphrase_file is None:
            passphrase = settings.require_passphrase()
        else:
            passphrase = args.passphrase_file.read_text(encoding="utf-8").strip()
        boundary = Boundary(settings=(NodeSettings,), hints=(hint,), extra_secrets=(passphrase,))
        agent = SigningAgent(args.node_dir, passphrase, rpc_url=settings.rpc_url)
        agent.serve(args.socket)
    except (Exception, KeyboardInterrupt) as exc:
        return boundary.report(exc)
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
