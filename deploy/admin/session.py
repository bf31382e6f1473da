"""How a ``metai-admin`` command reaches the chain: the deployment, the admin key, the transaction.

A command that changes something either signs its transaction with METAI_ADMIN_KEY and sends it,
or, given ``--calldata``, prints it for another wallet to send and needs no key: a consortium
whose admin is a multisig (a Safe) proposes the printed transaction there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deploy.errors import SettingsError
from deploy.settings import Settings

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from contracts.chain import TxResult
    from contracts.exchange import Exchange

CalldataOpt = Annotated[bool, typer.Option(
    "--calldata",
    help="print the transaction (target address and hex calldata) instead of signing and sending it, for another "
         "wallet to send, e.g. to propose it in a Safe; needs no METAI_ADMIN_KEY")]


@dataclass(frozen=True)
class Change:
    """One transaction to ConsortiumRoles: the function, its arguments, and what it does in words.

    Attributes:
        function: the contract function's name (``grantRole``).
        args: its arguments, as web3 takes them.
        todo: what it does, imperative (``grant hospital to 0x...``).
        done: the same in the past tense, printed once it is mined (``granted hospital to 0x...``).
    """

    function: str
    args: tuple[Any, ...]
    todo: str
    done: str


def connect(settings: Settings) -> Exchange:
    """The deployment of METAI_MANIFEST on METAI_RPC_URL.

    Raises:
        SettingsError: METAI_RPC_URL is unset, or no manifest is where METAI_MANIFEST points.
    """
    rpc_url = settings.require_rpc_url()
    manifest = settings.manifest_path()
    if not manifest.is_file():
        raise SettingsError(f"no deployment manifest at {manifest}; set METAI_MANIFEST to the file "
                            "`python -m deploy contracts` wrote (default: $METAI_RUN_DIR/deployment.json)")
    from contracts.exchange import Exchange  # web3: only once the settings are right

    return Exchange.connect(rpc_url, manifest)


class Session:
    """The deployment a command works on and, unless it only prints calldata, the key that signs.

    Parameters:
        exchange: the deployment.
        signer: the account of METAI_ADMIN_KEY, or None with ``--calldata``.
    """

    def __init__(self, exchange: Exchange, signer: LocalAccount | None) -> None:
        self.exchange = exchange
        self.signer = signer

    @classmethod
    def open(cls, *, calldata: bool) -> Session:
        """Read the settings and connect; unless ``calldata``, load METAI_ADMIN_KEY, which must pay for gas.

        Raises:
            SettingsError: a setting is missing, or the key's account holds no ether.
        """
        settings = Settings()
        key = None if calldata else settings.require_admin_key()
        exchange = connect(settings)
        if key is None:
            return cls(exchange, None)
        from eth_account import Account

        signer: LocalAccount = Account.from_key(key)
        if exchange.chain.balance(signer.address) == 0:
            raise SettingsError(
                f"the admin account {signer.address} (METAI_ADMIN_KEY) holds no ether on {exchange.chain.rpc_url}, "
                "so it cannot pay for the transaction; fund it, or set METAI_ADMIN_KEY to the consortium admin's key"
            )
        return cls(exchange, signer)

    def submit(self, change: Change, *, sender: str, when: str = "") -> TxResult | None:
        """Sign and send ``change`` and print what it did; with ``--calldata``, print it for ``sender`` to send.

        Parameters:
            change: the transaction.
            sender: who must send it, in words (``the consortium admin 0x...``), for the printout.
            when: when it may be sent, if not now (`` in a block after ...``), for the printout.

        Returns:
            The mined transaction, or None when it was only printed.

        Raises:
            ContractRevert: the contract refuses it (found while estimating gas; nothing is sent).
        """
        roles = self.exchange.roles
        if self.signer is None:
            data = roles.contract.encode_abi(change.function, args=list(change.args))
            signature = roles.contract.get_function_by_name(change.function).signature
            typer.echo(f"not sent: the transaction below would {change.todo}; {sender} is to send it{when}")
            for name, value in (("chain", self.exchange.chain.chain_id), ("to", roles.address), ("value", 0),
                                ("function", signature), ("data", data)):
                typer.echo(f"{name + ':':<10}{value}")
            return None
        tx = self.exchange.chain.transact(self.signer, roles.contract.functions[change.function](*change.args))
        typer.echo(f"{change.done}: transaction {tx.tx_hash} in block {tx.block_number} "
                   f"(signed by {self.signer.address})")
        return tx
