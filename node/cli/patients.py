"""Linking a local patient to the key they hold: ``challenge``, ``enrol``."""

from __future__ import annotations

from node.cli.common import open_node, out


def challenge(local_patient_id: str) -> None:
    """Issue the text a patient signs to enrol (give it to the patient)."""
    node = open_node()
    from node.enrol import issue_challenge

    issued = issue_challenge(node, local_patient_id)
    out().print(issued.text, markup=False, highlight=False)


def enrol(local_patient_id: str, address: str, signature: str) -> None:
    """Link a local patient to ADDRESS, proven by SIGNATURE over their challenge."""
    node = open_node()
    from node.enrol import enrol as do_enrol

    pseudonym = do_enrol(node, local_patient_id, address, signature)
    out().print(f"patient {pseudonym} is now linked to {address}", markup=False)
