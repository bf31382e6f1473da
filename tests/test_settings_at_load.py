"""Every service's settings are checked as they load: a malformed value stops there, naming the variable.

A missing required value is refused only by the command that needs it (``require...``), so a
command that does not need it still runs; a malformed one is refused by every command, before
any work. The values themselves never appear in the error (they may be secrets).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from coordinator.core.config import CoordinatorSettings
from coordinator.errors import CoordinatorConfigError
from node.config import NodeSettings
from node.errors import NodeConfigError

SECRET_LOOKING = "twelve-chars"  # the shortest passphrase accepted


@pytest.mark.parametrize(("name", "value", "why"), [
    ("METAI_NODE_PASSPHRASE", "changeme", "a placeholder"),
    ("METAI_NODE_PASSPHRASE", "elevenchars", "shorter than 12 characters"),
    ("METAI_NODE_RPC_URL", "ftp://chain:8545", "http"),
    ("METAI_NODE_PACS_URL", "notaurl", "PACS URL 'notaurl' is not an http"),
    ("METAI_NODE_PACS_URL", "http://user:pw@pacs:8042", "contains a username or password"),
    ("METAI_NODE_GAS_ROUNDS", "0", "greater than 0"),
    ("METAI_NODE_GAS_ROUNDS", "ten", "valid integer"),
])
def test_a_malformed_node_setting_is_refused_as_it_loads(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                         why: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=why) as raised:
        NodeSettings(_env_file=None)  # type: ignore[call-arg]
    assert "input_value" not in str(raised.value)


def test_an_unset_node_passphrase_is_refused_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_NODE_PASSPHRASE", "")
    settings = NodeSettings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(NodeConfigError, match="METAI_NODE_PASSPHRASE is not set"):
        settings.require_passphrase()
    monkeypatch.setenv("METAI_NODE_PASSPHRASE", SECRET_LOOKING)
    assert NodeSettings(_env_file=None).require_passphrase() == SECRET_LOOKING  # type: ignore[call-arg]


@pytest.mark.parametrize(("name", "value", "why"), [
    ("METAI_COORDINATOR_PASSPHRASE", "elevenchars", "shorter than 12 characters"),
    ("METAI_COORDINATOR_RPC_URL", "localhost:8545", "http"),
    ("METAI_COORDINATOR_ANCHOR", "maybe", "bool"),
])
def test_a_malformed_coordinator_setting_is_refused_as_it_loads(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                value: str, why: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=why) as raised:
        CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]
    assert "input_value" not in str(raised.value)


def test_the_coordinator_names_what_a_study_run_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METAI_COORDINATOR_RPC_URL", "METAI_COORDINATOR_PASSPHRASE"):
        monkeypatch.setenv(name, "")
    with pytest.raises(CoordinatorConfigError, match="METAI_COORDINATOR_RPC_URL is not set"):
        CoordinatorSettings(_env_file=None).require()  # type: ignore[call-arg]
    monkeypatch.setenv("METAI_COORDINATOR_RPC_URL", "http://127.0.0.1:8545")
    with pytest.raises(CoordinatorConfigError, match="METAI_COORDINATOR_PASSPHRASE is not set"):
        CoordinatorSettings(_env_file=None).require()  # type: ignore[call-arg]


@pytest.mark.parametrize(("values", "why"), [
    ({"ADDRESS": "http://127.0.0.1:9093"}, "expected HOST:PORT of the SuperLink"),
    ({"ADDRESS": "127.0.0.1:9093"}, "needs METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES"),
    ({"ADDRESS": "10.1.2.3:9093", "INSECURE": "true"}, "not on loopback, so it must be reached over TLS"),
    ({"ROOT_CERTIFICATES": "ca.pem", "INSECURE": "true"}, "excludes METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES"),
])
def test_a_superlink_the_service_cannot_reach_safely_is_refused_as_it_loads(
        monkeypatch: pytest.MonkeyPatch, values: dict[str, str], why: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"METAI_COORDINATOR_SUPERLINK_{name}", value)
    with pytest.raises(ValidationError, match=why):
        CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(("values", "root"), [
    ({"ADDRESS": "127.0.0.1:9093", "INSECURE": "true"}, None),
    ({"ADDRESS": "[::1]:9093", "INSECURE": "true"}, None),
    ({"ADDRESS": "link.example.org:9093", "ROOT_CERTIFICATES": "secrets/ca.pem"}, "secrets/ca.pem"),
])
def test_a_superlink_on_loopback_or_over_tls_is_taken(monkeypatch: pytest.MonkeyPatch, values: dict[str, str],
                                                      root: str | None) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"METAI_COORDINATOR_SUPERLINK_{name}", value)
    settings = CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.superlink_address == values["ADDRESS"]
    assert settings.superlink_root_certificates == (None if root is None else Path(root))


_MANAGED = {"SUPERLINK": "managed", "FLEET_CERT": "fleet.pem", "FLEET_KEY": "fleet.key", "FLEET_CA": "ca.pem"}


@pytest.mark.parametrize(("values", "why"), [
    ({"SUPERLINK": "managed"}, "superlink\n  Value error, is managed, which needs METAI_COORDINATOR_FLEET_CERT, "
                               "METAI_COORDINATOR_FLEET_KEY, METAI_COORDINATOR_FLEET_CA"),
    ({**_MANAGED, "SUPERLINK_ADDRESS": "127.0.0.1:9093", "SUPERLINK_INSECURE": "true"},
     "runs its own SuperLink on 127.0.0.1:9093; unset METAI_COORDINATOR_SUPERLINK_ADDRESS"),
    ({**_MANAGED, "FLEET_PORT": "9093"}, "the service's three ports must differ: .*METAI_COORDINATOR_FLEET_PORT=9093"),
    ({**_MANAGED, "PORT": "9092"}, "the service's three ports must differ"),
    ({"FLEET_CERT": "fleet.pem"}, "is external, but METAI_COORDINATOR_FLEET_CERT is set"),
    ({"SUPERLINK": "inside"}, "'external' or 'managed'"),
    ({**_MANAGED, "SUPERLINK_PORT": "0"}, "greater than or equal to 1"),
])
def test_a_managed_superlink_without_what_it_needs_is_refused_as_it_loads(
        monkeypatch: pytest.MonkeyPatch, values: dict[str, str], why: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"METAI_COORDINATOR_{name}", value)
    with pytest.raises(ValidationError, match=why):
        CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]


def test_a_managed_superlink_is_reached_on_loopback_over_its_own_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.federated.managed import superlink_connection

    for name, value in {**_MANAGED, "SUPERLINK_PORT": "9300", "SUPERLINK_DIR": "state/link"}.items():
        monkeypatch.setenv(f"METAI_COORDINATOR_{name}", value)
    settings = CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]
    connection = superlink_connection(settings)
    assert connection is not None
    assert connection.address == "127.0.0.1:9300"
    assert connection.root_certificates == (Path("state/link") / "tls" / "ca.pem").resolve()
    env = settings.as_env()  # what its ServerApps read: the same settings, paths absolute
    assert CoordinatorSettings(_env_file=None, **{k.removeprefix("METAI_COORDINATOR_").lower(): v  # type: ignore[arg-type]
                                                  for k, v in env.items()}).fleet_cert == Path("fleet.pem").resolve()


@pytest.mark.parametrize(("values", "why"), [
    ({"SUPERLINK_ADDRESS": "https://10.77.0.2:9443"}, "expected HOST:PORT of the SuperLink's Fleet API"),
    ({"SUPERLINK_ADDRESS": "10.77.0.2"}, "expected HOST:PORT of the SuperLink's Fleet API"),
    ({"SUPERLINK_ADDRESS": "::1:9443"}, "an IPv6 address in brackets"),
    ({"SUPERLINK_ADDRESS": "10.77.0.2:9443", "SUPERLINK_INSECURE": "true"},
     "not on loopback, so it must be reached over TLS: set METAI_NODE_SUPERLINK_ROOT_CERTIFICATES"),
    ({"SUPERLINK_ROOT_CERTIFICATES": "ca.pem", "SUPERLINK_INSECURE": "true"},
     "excludes METAI_NODE_SUPERLINK_ROOT_CERTIFICATES"),
    ({"SUPERNODE_PORT": "0"}, "greater than or equal to 1"),
    ({"HEALTH_PORT": "65536"}, "less than or equal to 65535"),
    ({"SUPERNODE_PORT": "9100", "HEALTH_PORT": "9100"}, "both 9100; give each its own port"),
    ({"LOG_MAX_BYTES": "100"}, "greater than or equal to 1024"),
    ({"LOG_BACKUPS": "0"}, "greater than or equal to 1"),
    ({"START_TIMEOUT": "0"}, "greater than 0"),
    ({"RUNTIME_DIR": "/" + "r" * 100}, "over the 107 a Unix socket path may have; set METAI_NODE_RUNTIME_DIR"),
])
def test_a_serve_setting_that_cannot_work_is_refused_as_it_loads(monkeypatch: pytest.MonkeyPatch,
                                                                 values: dict[str, str], why: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"METAI_NODE_{name}", value)
    with pytest.raises(ValidationError, match=why):
        NodeSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(("values", "root"), [
    ({"SUPERLINK_ADDRESS": "10.77.0.2:9443", "SUPERLINK_ROOT_CERTIFICATES": "/etc/metai/ca.pem"}, "/etc/metai/ca.pem"),
    ({"SUPERLINK_ADDRESS": "link.consortium.example:443", "SUPERLINK_ROOT_CERTIFICATES": "ca.pem"}, "ca.pem"),
    ({"SUPERLINK_ADDRESS": "[::1]:9092", "SUPERLINK_INSECURE": "true"}, None),
    ({"SUPERLINK_ADDRESS": "localhost:9092", "SUPERLINK_INSECURE": "true"}, None),
])
def test_a_superlink_over_tls_or_on_loopback_is_taken_by_the_node(monkeypatch: pytest.MonkeyPatch,
                                                                  values: dict[str, str], root: str | None) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"METAI_NODE_{name}", value)
    settings = NodeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.require_superlink() == (values["SUPERLINK_ADDRESS"], None if root is None else Path(root))


def test_serve_names_what_it_lacks_only_when_it_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = NodeSettings(_env_file=None)  # type: ignore[call-arg]  # other commands run without these
    with pytest.raises(NodeConfigError, match="METAI_NODE_SUPERLINK_ADDRESS is not set"):
        settings.require_superlink()
    monkeypatch.setenv("METAI_NODE_SUPERLINK_ADDRESS", "10.77.0.2:9443")
    with pytest.raises(NodeConfigError, match="METAI_NODE_SUPERLINK_ROOT_CERTIFICATES is not set; set it to the "
                                              "consortium CA certificate"):
        NodeSettings(_env_file=None).require_superlink()  # type: ignore[call-arg]


def test_the_serve_paths_default_into_the_node_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_NODE_DIR", "/srv/metai-node")
    settings = NodeSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.supernode_key_path, settings.log_path, settings.runtime_path) == (
        Path("/srv/metai-node/federation/supernode.key"), Path("/srv/metai-node/logs"), Path("/srv/metai-node/run"))
    assert (settings.supernode_port, settings.health_port, settings.log_max_bytes, settings.log_backups) == (
        9094, 9095, 10 * 1024 * 1024, 5)
