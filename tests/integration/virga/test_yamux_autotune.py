"""Receive-window auto-tuning (rust-yamux 0.13 style) over a real socket pair.

With ``auto_tune_window`` a stream starts at the spec's 256 KiB and doubles its receive
window, up to ``max_window``, while the reader drains it within two round trips; without
it the window stays where it was configured.  The first RTT sample comes from the
SYN -> ACK time, so tuning works before any keepalive ping.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from virga.connection.base import StreamConnection, stream_limit
from virga.yamux import INITIAL_STREAM_WINDOW, Session, YamuxConfig

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


async def _pair() -> tuple[StreamConnection, StreamConnection]:
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_unix_connection(sock=a, limit=stream_limit())
    rb, wb = await asyncio.open_unix_connection(sock=b, limit=stream_limit())
    return StreamConnection(ra, wa, "pair:a"), StreamConnection(rb, wb, "pair:b")


async def _transfer(config: YamuxConfig, total: int) -> int:
    """Send ``total`` bytes client -> server; return the server's final receive window."""
    ca, cb = await _pair()
    client, server = Session.client(ca, config), Session.server(cb, config)
    try:
        async with asyncio.timeout(30):
            out = await client.open_stream()
            writer = asyncio.create_task(out.write(b"\x5a" * total))
            inbound = await server.accept_stream()
            got = 0
            while got < total:
                got += len(await inbound.read())
            await writer
            assert client.rtt is not None  # sampled from SYN -> ACK
            return server._core.recv_window(inbound.stream_id) + (
                server._core._streams[inbound.stream_id].buffered
            )
    finally:
        await client.close()
        await server.close()


async def test_window_grows_up_to_max_when_auto_tuned() -> None:
    cfg = YamuxConfig(enable_keepalive=False, auto_tune_window=True, max_window=4 * MIB)
    window = await _transfer(cfg, 32 * MIB)
    assert INITIAL_STREAM_WINDOW < window <= 4 * MIB


async def test_window_stays_fixed_without_auto_tuning() -> None:
    cfg = YamuxConfig(enable_keepalive=False)
    window = await _transfer(cfg, 8 * MIB)
    assert window <= INITIAL_STREAM_WINDOW
