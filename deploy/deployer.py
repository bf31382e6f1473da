"""Deploy the MeTAI contracts to any JSON-RPC chain, grant initial roles, write the manifest."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable

from eth_account.signers.local import LocalAccount

from contracts.artifacts import CONTRACT_NAMES, load_artifact
from contracts.chain import Chain
from contracts.manifest import DeployedContract, Deployment
from contracts.roles import Role, RolesClient

#: Default wait, in seconds, between beginning and accepting a transfer of the admin seat.
ADMIN_DELAY = 2 * 24 * 3600


def deploy_contracts(
    chain: Chain,
    admin: LocalAccount,
    *,
    initial_roles: Iterable[tuple[Role, str]] = (),
    admin_delay: int = ADMIN_DELAY,
    progress: Callable[[str], None] | None = None,
) -> Deployment:
    """Deploy every MeTAI contract from ``admin`` and grant ``initial_roles``.

    Parameters:
        chain: the target chain (any JSON-RPC endpoint).
        admin: becomes the consortium admin; pays for the deployment.
        initial_roles: (role, address) pairs to grant right after deployment.
        admin_delay: seconds a transfer of the admin seat must wait before the new admin accepts it.
        progress: called with one line per step, for the operator.

    Returns:
        The deployment, ready to be written with :func:`contracts.manifest.write_manifest`.
    """
    say = progress or (lambda _line: None)
    deployed: dict[str, DeployedContract] = {}
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        args: tuple[int | str, ...] = ()
        if name == "ConsortiumRoles":
            args = (admin_delay, admin.address)
        elif name == "DatasetRegistry":
            args = (deployed["ConsortiumRoles"].address,)
        elif name == "StudyRegistry":
            args = (deployed["ConsortiumRoles"].address, deployed["DatasetRegistry"].address)
        result = chain.deploy(admin, artifact, *args)
        assert result.contract_address is not None  # Chain.deploy guarantees it
        deployed[name] = DeployedContract(
            address=result.contract_address,
            block=result.block_number,
            tx_hash=result.tx_hash,
            bytecode_sha256=artifact.bytecode_sha256,
        )
        say(f"deployed {name} at {result.contract_address} (block {result.block_number}, gas {result.gas_used:,})")
    roles = RolesClient(chain, deployed["ConsortiumRoles"].address)
    for role, account in initial_roles:
        roles.grant(admin, role, account)
        say(f"granted {role.name} to {account}")
    return Deployment(
        chain_id=chain.chain_id,
        contracts=deployed,
        admin=admin.address,
        deployed_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        rpc_url=chain.rpc_url,
    )
