"""The Control API's streaming answers as the coordinator reads them (``ControlClient.stream``, ``log_lines``).

The SuperLink's side of the wire is played here by httpx's mock transport, so that every way a
stream can arrive (split anywhere, several frames in one chunk, cut short, lying about its size,
refused) is tried; the federated tests follow every real run's log through the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from flwr.proto.control_pb2 import StreamLogsRequest, StreamLogsResponse

from coordinator.federated.control import ControlClient, ControlError, ControlUnavailable
from coordinator.federated.superlink_runs import log_lines

RUN_ID = 7


def _frame(text: str, timestamp: float = 1.0) -> bytes:
    payload = StreamLogsResponse(log_output=text, latest_timestamp=timestamp).SerializeToString()
    return len(payload).to_bytes(4, "big") + payload


class _Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def _client(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request] | None = None
            ) -> ControlClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer(request)

    return ControlClient("127.0.0.1:9", None, transport=httpx.MockTransport(handler))


def _streaming(chunks: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, stream=_Chunks(chunks))


def _split_everywhere(data: bytes) -> Iterator[list[bytes]]:
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def test_a_stream_split_at_every_byte_gives_the_same_messages() -> None:
    data = _frame("first line\n") + _frame("second ") + _frame("line\nthird\n", 2.0)
    for chunks in [[data], [bytes([b]) for b in data], *_split_everywhere(data)]:
        with _client(_streaming(chunks)) as control:
            got = list(control.stream("stream-logs", StreamLogsRequest(run_id=RUN_ID), StreamLogsResponse))
        assert [m.log_output for m in got] == ["first line\n", "second ", "line\nthird\n"]
        assert [m.latest_timestamp for m in got] == [1.0, 1.0, 2.0]


def test_the_request_names_the_run_and_asks_for_the_framed_stream() -> None:
    seen: list[httpx.Request] = []
    with _client(_streaming([_frame("x\n")]), seen) as control:
        assert list(log_lines(control, RUN_ID)) == ["x\n"]
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/v1/control/stream-logs"
    assert request.headers["accept"] == "application/flower-protobuf-stream"
    asked = StreamLogsRequest()
    asked.ParseFromString(request.content)
    assert (asked.run_id, asked.after_timestamp) == (RUN_ID, 0.0)


def test_log_lines_are_whole_lines_whatever_the_chunks_of_text() -> None:
    texts = ["INFO a", "bc\nINFO d\n", "", "\n", "tail without newline"]
    with _client(_streaming([_frame(t) for t in texts])) as control:
        assert list(log_lines(control, RUN_ID)) == ["INFO abc\n", "INFO d\n", "\n", "tail without newline"]


def test_an_empty_stream_is_an_empty_log() -> None:
    with _client(_streaming([])) as control:
        assert list(log_lines(control, RUN_ID)) == []


@pytest.mark.parametrize("cut", [1, 3, 4, 6])
def test_a_stream_that_ends_inside_a_frame_is_an_error_not_a_shorter_log(cut: int) -> None:
    data = _frame("whole\n") + _frame("cut short\n")
    truncated = data[:len(_frame("whole\n")) + cut]
    with _client(_streaming([truncated])) as control:
        lines = log_lines(control, RUN_ID)
        assert next(lines) == "whole\n"
        with pytest.raises(ControlError, match="ended inside a frame"):
            next(lines)


def test_a_frame_that_announces_an_absurd_size_is_refused_before_waiting_for_it() -> None:
    with _client(_streaming([(2**31 - 1).to_bytes(4, "big") + b"\x0a\x01x"])) as control, \
            pytest.raises(ControlError, match="frame of 2147483647 bytes"):
        list(log_lines(control, RUN_ID))


def test_a_frame_that_is_not_the_message_is_refused() -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # field 0x1fffffff... a varint that never ends
    with _client(_streaming([len(garbage).to_bytes(4, "big") + garbage])) as control, \
            pytest.raises(ControlError, match="is not a StreamLogsResponse"):
        list(log_lines(control, RUN_ID))


def test_a_refusal_keeps_flowers_code_and_detail() -> None:
    body = json.dumps({"code": 3001, "detail": "Run 7 not found while streaming logs."}).encode()
    with _client(lambda request: httpx.Response(404, content=body)) as control, \
            pytest.raises(ControlError, match="HTTP 404, Run 7 not found") as refused:
        list(log_lines(control, RUN_ID))
    assert (refused.value.status, refused.value.code) == (404, 3001)


def test_a_connection_broken_mid_stream_says_the_superlink_broke_off() -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield _frame("before the break\n")
            raise httpx.ReadError("connection reset by peer")

    with _client(lambda request: httpx.Response(200, stream=Broken())) as control:
        lines = log_lines(control, RUN_ID)
        assert next(lines) == "before the break\n"
        with pytest.raises(ControlUnavailable, match="broke off stream-logs"):
            next(lines)
