"""coordinator.federated.flower_config: the TOML files Flower reads are written and read back the same."""

from __future__ import annotations

import tomllib

import pytest

from coordinator.federated.flower_config import checked_config, toml_text


def test_values_that_need_quoting_read_back_the_same() -> None:
    table = {
        "node-dir": '/srv/St. Mary\'s "North"/node',
        "passphrase-file": "C:\\keys\\node.pass",
        "name": "Hôpital général",
        "study-id": 7, "lr": 0.003, "anchor": False,
        "nested.key": "a dotted key stays one key",
        "superlink": {"default": "metai", "metai": {"address": "127.0.0.1:9092", "insecure": True}},
    }
    assert tomllib.loads(toml_text(table)) == table


def test_a_value_toml_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot write to TOML"):
        toml_text({"when": object()})


@pytest.mark.parametrize(("config", "message"), [
    ({"bad key": 1}, "key 'bad key' must be letters"),
    ({"k": [1, 2]}, r"\['k'\] is list, expected str, int, float or bool"),
    ({"k": "two\nlines"}, "holds a control character"),
])
def test_values_flower_cannot_pass_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checked_config(config, "node_config")  # type: ignore[arg-type]
