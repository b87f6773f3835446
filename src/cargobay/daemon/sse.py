"""Server-sent events (the ``text/event-stream`` format) from a stream of text chunks.

The web GUI follows a machine's console through ``EventSource``, which reconnects by
itself and sends the token cookie.  A chunk of console text may end in the middle of a
line, so ``SseEncoder`` keeps the unfinished line until its end arrives (or the stream
ends).  Each line becomes one ``data:`` event; the stream ends with ``event: end``, which
tells the browser not to reconnect to a log that will not grow.  Sans-IO: text in,
event text out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ["SseEncoder", "sse_lines"]


class SseEncoder:
    def __init__(self) -> None:
        self._partial = ""

    def feed(self, text: str) -> str:
        """The events for every line completed by ``text`` (possibly none)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return "".join(self._event(line) for line in lines)

    def end(self) -> str:
        """The unfinished last line, if any, then the end event."""
        rest, self._partial = self._partial, ""
        return (self._event(rest) if rest else "") + "event: end\ndata: \n\n"

    @staticmethod
    def _event(line: str) -> str:
        # One line per event: a CR (the serial console's CRLF) would split it in two.
        return f"data: {line.rstrip(chr(13)).replace(chr(13), '')}\n\n"


async def sse_lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """``chunks`` as server-sent events, one per line, then the end event."""
    encoder = SseEncoder()
    async for chunk in chunks:
        events = encoder.feed(chunk)
        if events:
            yield events
    yield encoder.end()
