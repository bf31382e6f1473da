"""A name written into Modality goes into the catalog and onto the chain.

``node.formats._modality`` keeps the file's Modality as the record's modality when it looks like a
code (``[A-Z0-9_]{1,16}``), and de-identification keeps Modality (a CS value of allowed characters
passes the repertoire check). A patient name in capitals without spaces (``DOE_JOHN``) is such a
"code". Registering the draft dataset writes that modality into ``DatasetRegistry`` (bytes16), on a
chain every consortium member reads and nobody can erase. DESIGN.md: "Nothing personal goes on
chain: only pseudonymous addresses, hashes, counts and codes"; a modality on chain should be one of
the standard's defined terms (CT, MR, ...), anything else a neutral code such as OT.
"""

from __future__ import annotations

from pathlib import Path

from node.datasets import list_datasets, register
from node.ingest import Ingestor
from tests.node.ingest_corpus import dicom_bytes

MARKER = "MRKZQX_DOE_JOHN"  # 15 characters, only capitals and underscores: a valid CS value


def test_a_name_in_modality_does_not_reach_the_chain(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "image.dcm").write_bytes(dicom_bytes(patient="REVIEW2-MOD-1", instance=1, Modality=MARKER))
    node = make_node()  # holds the HOSPITAL role: it can register
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    (draft,) = list_datasets(node)
    dataset = register(node, draft.name)
    on_chain = node.exchange.datasets.dataset(dataset.chain_dataset_id)
    assert (MARKER in draft.name, on_chain.modality == MARKER) == (False, False), (
        f"draft {draft.name!r} and chain dataset {dataset.chain_dataset_id} carry Modality {on_chain.modality!r}"
    )
