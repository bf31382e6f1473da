"""node.json names its format and version, and a file of another one is refused naming both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.config import NODE_FILE, NodeInfo
from node.errors import NodeConfigError

INFO = NodeInfo("General", "0x" + "01" * 20, "http://127.0.0.1:8545", "deployment.json", "2026-01-01T00:00:00+00:00")


def test_node_json_says_what_it_is(tmp_path: Path) -> None:
    INFO.save(tmp_path)
    written = json.loads((tmp_path / NODE_FILE).read_text("utf-8"))
    assert (written["format"], written["version"]) == ("metai-node", 1)
    assert NodeInfo.load(tmp_path) == INFO


@pytest.mark.parametrize("change", [{"format": "metai-kept-cohort"}, {"version": 2}])
def test_another_format_or_version_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    INFO.save(tmp_path)
    path = tmp_path / NODE_FILE
    path.write_text(json.dumps({**json.loads(path.read_text("utf-8")), **change}), encoding="utf-8")
    with pytest.raises(NodeConfigError, match="this node reads 'metai-node' version 1"):
        NodeInfo.load(tmp_path)
