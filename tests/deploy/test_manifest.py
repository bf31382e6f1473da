"""Deployment manifests: round trip, malformed files, and a manifest for another chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ManifestError
from contracts.exchange import Exchange
from contracts.manifest import Deployment, read_manifest, write_manifest


def test_round_trip(exchange: Exchange, tmp_path: Path) -> None:
    path = tmp_path / "m" / "deployment.json"
    write_manifest(exchange.deployment, path)
    assert read_manifest(path) == exchange.deployment


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format": "other"}', "not a MeTAI deployment manifest"),
        ('{"format": "metai-deployment", "version": 99}', "manifest version 99"),
        ('{"format": "metai-deployment", "version": 1, "chain_id": 1}', "missing or malformed field"),
    ],
)
def test_malformed_manifest_is_refused(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Deployment.from_json(text, "m.json")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nowhere\.json"):
        read_manifest(tmp_path / "nowhere.json")


def test_manifest_for_another_chain_is_refused(exchange: Exchange) -> None:
    other = Deployment(**{**exchange.deployment.__dict__, "chain_id": 1})
    with pytest.raises(ManifestError, match="the manifest is for chain 1"):
        Exchange(exchange.chain, other)
