"""The server-sent events encoder of the console log stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cargobay.daemon.sse import SseEncoder, sse_lines


def test_lines_split_across_chunks_become_one_event_each() -> None:
    encoder = SseEncoder()
    assert encoder.feed("boot") == ""
    assert encoder.feed("ing\r\nlogin: ") == "data: booting\n\n"
    assert encoder.feed("\n\nx") == "data: login: \n\ndata: \n\n"
    assert encoder.end() == "data: x\n\nevent: end\ndata: \n\n"
    assert encoder.end() == "event: end\ndata: \n\n"


def test_a_carriage_return_cannot_start_a_new_field() -> None:
    assert SseEncoder().feed("a\rdata: forged\n") == "data: adata: forged\n\n"


async def test_the_stream_ends_with_the_end_event() -> None:
    async def chunks() -> AsyncIterator[str]:
        for chunk in ("one\ntw", "o", "\nthree"):
            yield chunk

    events = "".join([e async for e in sse_lines(chunks())])
    assert events == "data: one\n\ndata: two\n\ndata: three\n\nevent: end\ndata: \n\n"
