"""Check a chain's JSON-RPC URL before anything connects to it.

Kept apart from :mod:`contracts.chain` (which imports web3) so that settings classes and
command lines can refuse a malformed URL at start-up without paying for that import.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from contracts.errors import InvalidRpcUrl

#: Schemes :class:`contracts.chain.Chain` can talk to (it uses web3's HTTP provider).
RPC_SCHEMES = ("http", "https")
_EXAMPLE = "http://127.0.0.1:8545"


def check_rpc_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host (and a valid port, if any).

    Raises:
        InvalidRpcUrl: naming the value, what was expected and an example.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise InvalidRpcUrl(f"{url!r} is not a valid URL (bad port or brackets); give e.g. {_EXAMPLE}") from None
    if parts.scheme.lower() not in RPC_SCHEMES:
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise InvalidRpcUrl(
            f"{url!r} is not a JSON-RPC URL ({shown}); expected http(s)://HOST[:PORT][/PATH], e.g. {_EXAMPLE}"
        )
    if not parts.hostname:
        raise InvalidRpcUrl(f"{url!r} names no host; expected http(s)://HOST[:PORT][/PATH], e.g. {_EXAMPLE}")
    if port == 0:
        raise InvalidRpcUrl(f"{url!r} has port 0; give the port the chain listens on, e.g. {_EXAMPLE}")
    return text


def optional_rpc_url(value: str | None) -> str | None:
    """``None`` for an unset or blank setting, else the URL :func:`check_rpc_url` accepted.

    The validator of every settings class's ``rpc_url`` (``AfterValidator(optional_rpc_url)``),
    so a malformed URL is refused when the settings load.
    """
    return None if value is None or not value.strip() else check_rpc_url(value)
