"""The SuperLink's Control API, called directly: protobuf messages over HTTPS, on the coordinator host only.

Flower 1.41 serves the Control API under ``/v1/control/`` on the SuperLink's one port: a POST of
the serialized request (``application/protobuf``) answers the serialized response, or an error
status with a JSON body ``{"code": <Flower error code>, "detail": "..."}``. The open-source
SuperLink asks no credentials on it, which is why it must be reachable from this host only (the
Fleet gateway never forwards it). The messages are Flower's own (``flwr.proto.control_pb2``).
A streaming method (``stream-logs``) answers ``application/flower-protobuf-stream``: each message
framed by its length (4 bytes, big-endian), until the SuperLink ends the stream.

The ``flwr`` CLI is not used for these calls: ``flwr supernode list`` shows neither the public
keys nor the names that registration must compare, and each ``flwr`` command is a process of its
own that imports Flower again (about 1.2 s of CPU), several times per run when a run is followed
(:mod:`coordinator.federated.superlink`).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar, cast

import httpx
from google.protobuf.message import DecodeError, Message

from coordinator.errors import CoordinatorError

__all__ = ["ControlClient", "ControlError", "ControlUnavailable"]

_PROTOBUF = "application/protobuf"
_PROTOBUF_STREAM = "application/flower-protobuf-stream"
_FRAME_HEADER = 4  # bytes of a stream frame's length
#: A log chunk or a run listing is far smaller; a larger frame means the stream is not what we expect.
_MAX_FRAME = 64 * 1024 * 1024
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

    def __init__(self, address: str, ca_cert: Path | None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        """Talk to ``address`` (HOST:PORT); ``ca_cert`` None means plain HTTP (a loopback lab only).

        ``transport``: httpx's transport to send through (default: the network).

        Raises:
            ControlUnavailable: ``ca_cert`` cannot be read.
        """
        self.address = address
        self._timeout = timeout
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
                                    trust_env=False, transport=transport)  # never through an HTTP(S)_PROXY

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

    def stream(self, method: str, request: Message, response_type: type[_Response]) -> Iterator[_Response]:
        """Call the streaming ``/v1/control/<method>`` with ``request`` and yield each answer as it arrives.

        The iteration ends when the SuperLink ends the stream. There is no read time-out (a stream
        may wait long between messages): to stop early, close the generator, or close this client
        from another thread.

        Raises:
            ControlUnavailable: the SuperLink did not answer, or the connection broke.
            ControlError: it answered with an error, or with a frame that is not a ``response_type``.
        """
        timeout = httpx.Timeout(self._timeout, read=None)
        headers = {"content-type": _PROTOBUF, "accept": _PROTOBUF_STREAM, "accept-encoding": "identity"}
        try:
            with self._client.stream("POST", f"/v1/control/{method}", content=request.SerializeToString(),
                                     headers=headers, timeout=timeout) as answer:
                if answer.status_code != 200:
                    answer.read()
                    code, detail = _error_of(answer)
                    raise ControlError(f"the SuperLink refused {method}: HTTP {answer.status_code}, {detail}",
                                       status=answer.status_code, code=code)
                buffer = bytearray()
                for chunk in answer.iter_bytes():
                    buffer += chunk
                    while len(buffer) >= _FRAME_HEADER:
                        size = int.from_bytes(buffer[:_FRAME_HEADER], "big")
                        if size > _MAX_FRAME:
                            raise ControlError(f"the SuperLink's {method} stream announced a frame of {size} bytes",
                                               status=answer.status_code, code=None)
                        if len(buffer) < _FRAME_HEADER + size:
                            break
                        message = response_type()
                        try:
                            message.ParseFromString(bytes(buffer[_FRAME_HEADER:_FRAME_HEADER + size]))
                        except DecodeError as exc:
                            raise ControlError(f"a frame of the SuperLink's {method} stream is not a "
                                               f"{response_type.__name__} ({exc})",
                                               status=answer.status_code, code=None) from None
                        del buffer[:_FRAME_HEADER + size]
                        yield cast(_Response, message)
                if buffer:
                    raise ControlError(f"the SuperLink's {method} stream ended inside a frame "
                                       f"({len(buffer)} bytes left over)", status=answer.status_code, code=None)
        except httpx.TransportError as exc:
            raise ControlUnavailable(f"the SuperLink's Control API at {self.address} broke off {method} "
                                     f"({type(exc).__name__}: {exc}); is the SuperLink running?") from None

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
