"""The demo's last step: a patient fetches their receipt from the API and checks every proof in it on chain.

The patient trusts the coordinator for nothing here: each leaf is recomputed from the record id,
the kind and the patient's own address (``contracts.leaves.cohort_leaf``), and each proof is put
to ``StudyRegistry.inCohort`` on the chain directly. The receipt is saved as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth_account.signers.local import LocalAccount
from rich.console import Console

from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from deploy.demo.api import JSON, Coordinator


def _rounds(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) or "none"


def show_receipt(out: Console, api: Coordinator, ex: Exchange, key: LocalAccount, pid: str, path: Path) -> int:
    """Sign in as ``key``, fetch, print in short and save its receipt, and verify each proof on chain.

    Returns:
        How many proofs the chain did not accept (0 when the receipt holds up).
    """
    receipt: JSON = api.sign_in(key).receipt()
    path.write_text(json.dumps(receipt, indent=2) + "\n", encoding="utf-8")
    out.print(f"{pid} ({key.address}) signed in; receipt ({receipt['format']} {receipt['version']}) saved to {path}",
              highlight=False, soft_wrap=True)
    for consent in receipt["consents"]:
        revoked = (f", revoked in tx {consent['revoked_tx']} (block {consent['revoked_at_block']})"
                   if consent["revoked_tx"] else "")
        out.print(f"consent {consent['consent_id'][:18]}… ({consent['state']}): {consent['words']}", highlight=False)
        out.print(f"  granted in tx {consent['granted_tx']} (block {consent['granted_at_block']}){revoked}",
                  highlight=False, soft_wrap=True)
    failures = 0
    for use in receipt["data_uses"]:
        included = [r["round"] for r in use["rounds"] if r["included"]]
        left_out = [r["round"] for r in use["rounds"] if r["included"] is False]
        out.print(f"study {use['study_id']} at hospital {use['hospital']}: my records were in round(s) "
                  f"{_rounds(included)}, not in round(s) {_rounds(left_out)}", highlight=False)
        for round_use in use["rounds"]:
            for record in round_use["records"]:
                leaf = cohort_leaf(record["record_id"], record["kind"], key.address)
                proof = [bytes.fromhex(p.removeprefix("0x")) for p in record["proof"]]
                ok = ("0x" + leaf.hex() == record["leaf"].lower()
                      and ex.studies.in_cohort(use["study_id"], round_use["round"], use["hospital"], leaf, proof))
                failures += not ok
                out.print(f"  round {round_use['round']}, record {record['record_id'][:16]}… (kind {record['kind']}): "
                          f"leaf recomputed from my address, inCohort: "
                          f"{'verified on chain' if ok else '[red]NOT verified on chain[/]'}", highlight=False)
    out.print("every proof in the receipt holds on chain" if failures == 0
              else f"[red]{failures} proof(s) of the receipt do not hold on chain[/]")
    return failures
