"""``python -m deploy certs``: the consortium CA and the coordinator's server certificate, for a real deployment.

The consortium keeps one CA (``certs ca``): its key signs the coordinator's server certificate
and stays with whoever the consortium trusts with it, offline if it can. ``certs server`` makes the
certificate the coordinator's Fleet gateway shows hospitals, for every DNS name and IP address
they reach it at (``--dns``, ``--ip``, repeatable). The coordinator reads the certificate, its key
and the CA certificate (``METAI_COORDINATOR_FLEET_CERT``, ``_KEY``, ``_CA``); each hospital gets
the CA certificate only, and its SuperNode verifies the gateway against it
(``--root-certificates``). Keys are P-384, unencrypted PEM with mode 0600; nothing existing is
overwritten. See docs/coordinator.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.federated.tls import Issued, load_certificate, make_ca, make_server_certificate, names_of, write_issued
from deploy.errors import SettingsError

__all__ = ["certs_app"]

certs_app = typer.Typer(help="The consortium CA and the coordinator's server certificate (TLS of the Fleet gateway).",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)

DaysOption = Annotated[int, typer.Option(min=1, help="days the certificate is valid")]


@certs_app.command("ca")
def ca(
    out: Annotated[Path, typer.Option(help="folder for ca.pem (hand it to every hospital) and ca.key (keep it)")],
    name: Annotated[str, typer.Option(help="the CA's common name")] = "MeTAI consortium CA",
    days: DaysOption = 3650,
) -> None:
    """Make the consortium CA: ca.pem and ca.key in --out."""
    issued = _made(lambda: make_ca(name, days=days))
    write_issued(issued, out / "ca.pem", out / "ca.key")
    typer.echo(f"CA certificate {out / 'ca.pem'} (give it to the coordinator and every hospital), key "
               f"{out / 'ca.key'} (mode 0600; keep it, offline if you can), valid until "
               f"{issued.certificate.not_valid_after_utc:%Y-%m-%d}")


@certs_app.command("server")
def server(
    ca_dir: Annotated[Path, typer.Option("--ca", help="folder holding the CA's ca.pem and ca.key")],
    out: Annotated[Path, typer.Option(help="folder for the certificate and its key")],
    dns: Annotated[list[str] | None, typer.Option("--dns", help="a DNS name hospitals use; repeatable",
                                                  show_default=False)] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="an IP address hospitals use; repeatable",
                                                 show_default=False)] = None,
    file_name: Annotated[str, typer.Option("--name", help="file name: NAME.pem and NAME.key")] = "fleet",
    days: DaysOption = 397,
) -> None:
    """Make the coordinator's server certificate for --dns and --ip, signed by the CA in --ca."""
    authority = _authority(ca_dir)
    issued = _made(lambda: make_server_certificate(authority, dns=dns or [], ips=ip or [],
                                                   common_name=(dns or ip or ["MeTAI coordinator"])[0], days=days))
    write_issued(issued, out / f"{file_name}.pem", out / f"{file_name}.key")
    names = names_of(issued.certificate)
    typer.echo(f"server certificate {out / f'{file_name}.pem'} for {', '.join([*names.dns, *names.ips])} and key "
               f"{out / f'{file_name}.key'} (mode 0600), valid until {names.not_after:%Y-%m-%d}; set "
               "METAI_COORDINATOR_FLEET_CERT, _FLEET_KEY and _FLEET_CA (the CA's ca.pem) to them")


def _made(make: Callable[[], Issued]) -> Issued:
    try:
        return make()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _authority(ca_dir: Path) -> Issued:
    cert_file = ca_dir / "ca.pem"
    if not cert_file.is_file():
        raise SettingsError(f"{cert_file} does not exist; make the CA first (python -m deploy certs ca --out ...)")
    authority = Issued(load_certificate(cert_file, "the CA certificate"), _ca_key(ca_dir / "ca.key"))
    if authority.key.public_key() != authority.certificate.public_key():
        raise SettingsError(f"{ca_dir / 'ca.key'} is not the key of {cert_file}; keep the two `certs ca` made")
    return authority


def _ca_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist; make the CA first (python -m deploy certs ca --out ...)") from None
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SettingsError(f"{path} is not an EC private key, as `certs ca` makes")
    return key
