"""`metai-node federation-key`: the SuperNode key pair is made on the hospital host, kept, and only its public
half is printed, in the form Flower's SuperNode and `flwr supernode register` read."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from node.cli import app
from node.federation_key import key_pair


def _env(node_dir: Path) -> dict[str, str]:
    return {"METAI_NODE_DIR": str(node_dir)}  # no passphrase: the command needs none


def test_the_key_is_made_once_kept_and_only_its_public_half_printed(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = make_node()
    out = tmp_path / "to-the-operator.pub"
    first = CliRunner().invoke(app, ["federation-key", "--out", str(out)], env=_env(node.dir), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    private_path, public_path = key_pair(node.dir)
    line = first.stdout.strip()
    assert first.stdout == line + "\n"  # standard output is the public key line alone
    assert line.startswith("ecdsa-sha2-nistp384 ")
    assert "made a new SuperNode key pair" in first.stderr
    assert "PRIVATE KEY" not in first.output
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_path.parent.stat().st_mode) == 0o700
    # What Flower's SuperNode does with --auth-supernode-private-key: an unencrypted OpenSSH EC key.
    key = serialization.load_ssh_private_key(private_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP384R1)
    derived = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert derived.decode() == line
    # What `flwr supernode register` reads.
    assert serialization.load_ssh_public_key(out.read_bytes()).public_numbers() == key.public_key().public_numbers()
    assert public_path.read_text(encoding="utf-8") == line + "\n"
    private_bytes = private_path.read_bytes()
    public_path.unlink()  # lost: made again from the private key, which stays as it was
    again = CliRunner().invoke(app, ["federation-key"], env=_env(node.dir), catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == line
    assert "the SuperNode key pair kept" in again.stderr
    assert private_path.read_bytes() == private_bytes
    assert public_path.read_text(encoding="utf-8") == line + "\n"


def test_a_damaged_key_file_is_named_and_left_alone(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node()
    private_path, _ = key_pair(node.dir)
    private_path.parent.mkdir(mode=0o700)
    private_path.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n")
    result = CliRunner().invoke(app, ["federation-key"], env=_env(node.dir))
    assert result.exit_code == 1
    assert f"error: {private_path} is not an unencrypted OpenSSH private key" in result.stderr
    assert "Traceback" not in result.output
    assert private_path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key")


def test_a_key_of_another_curve_is_refused(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node()
    private_path, _ = key_pair(node.dir)
    private_path.parent.mkdir(mode=0o700)
    other = ec.generate_private_key(ec.SECP256R1())
    private_path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                 serialization.NoEncryption()))
    result = CliRunner().invoke(app, ["federation-key"], env=_env(node.dir))
    assert result.exit_code == 1
    assert "holds a key of another kind than NIST P-384 ECDSA" in result.stderr
