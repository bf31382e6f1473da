"""The SuperLink's Control API, called directly: protobuf messages over HTTPS, on the coordinator host only.

Flower 1.41 serves the Control API under ``/v1/control/`` on the SuperLink's one port: a POST of
the serialized request (``application/protobuf``) answers the serialized response, or an error
status with a JSON body ``{"code": <Flower error code>, "detail": "..."}``. The open-source
SuperLink asks no credentials on it, which is why it must be reachable from this host only (the
Fleet gateway never forwards it). The messages are Flower's own (``flwr.proto.control_pb2``);
the ``flwr`` CLI is not used here because ``flwr supernode list`` shows neither the public keys
nor the names that registration must compare.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import TypeVar, cast

import httpx
from google.protobuf.message import DecodeError, Message

from coordinator.errors import CoordinatorError

__all__ = ["ControlClient", "ControlError", "ControlUnavailable"]

_PROTOBUF = "application/protobuf"
_Response = TypeVar("_Response", bound=Message)


class ControlError(CoordinatorError, RuntimeError):
    """The Control API refused a call; ``status`` is the HTTP status, ``code`` Flower's error code."""

    def __init__(self, message: str, *, status: int, code: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ControlUnavailable(CoordinatorError, ConnectionError):
    """The SuperLink did not answer (not running, restarting, or another program on its port)."""


class ControlClient:
    """Calls to one SuperLink's Control API over TLS verified against ``ca_cert``."""

    def __init__(self, address: str, ca_cert: Path | None, *, timeout: float = 30.0) -> None:
        """Talk to ``address`` (HOST:PORT); ``ca_cert`` None means plain HTTP (a loopback lab only).

        Raises:
            ControlUnavailable: ``ca_cert`` cannot be read.
        """
        self.address = address
        verify: ssl.SSLContext | bool = False
        if ca_cert is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise ControlUnavailable(f"the CA certificate {ca_cert} of the SuperLink at {address} cannot be read "
                                         f"({exc}); a managed SuperLink's is made when `metai-coordinator serve` "
                                         "starts it") from None
        scheme = "http" if ca_cert is None else "https"
        self._client = httpx.Client(base_url=f"{scheme}://{address}", verify=verify, timeout=timeout,
                                    trust_env=False)  # never through an HTTP(S)_PROXY

    def call(self, method: str, request: Message, response_type: type[_Response]) -> _Response:
        """Call ``/v1/control/<method>`` with ``request`` and return its answer.

        Raises:
            ControlUnavailable: the SuperLink did not answer.
            ControlError: it answered with an error (its code and detail are kept).
        """
        try:
            answer = self._client.post(f"/v1/control/{method}", content=request.SerializeToString(),
                                       headers={"content-type": _PROTOBUF, "accept": _PROTOBUF})
        except httpx.TransportError as exc:
            raise ControlUnavailable(f"the SuperLink's Control API at {self.address} did not answer "
                                     f"({type(exc).__name__}: {exc}); is the SuperLink running?") from None
        if answer.status_code != 200:
            code, detail = _error_of(answer)
            raise ControlError(f"the SuperLink refused {method}: HTTP {answer.status_code}, {detail}",
                               status=answer.status_code, code=code)
        message = response_type()
        try:
            message.ParseFromString(answer.content)
        except DecodeError as exc:
            raise ControlError(f"the SuperLink's answer to {method} is not a {response_type.__name__} ({exc})",
                               status=answer.status_code, code=None) from None
        return cast(_Response, message)  # protobuf ships no type hints: Message is Any to mypy

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _error_of(answer: httpx.Response) -> tuple[int | None, str]:
    try:
        body = json.loads(answer.text)
    except ValueError:
        return None, answer.text[:200] or "no detail"
    if not isinstance(body, dict):
        return None, answer.text[:200]
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("detail", body))
