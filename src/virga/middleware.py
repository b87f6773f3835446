"""Middleware between the application and the protocol layer (seed 001, 7.3).

Each middleware transforms whole messages: ``outbound`` on the way to the transport,
``inbound`` on the way back.  A chain applies outbound in order and inbound in reverse,
so ``[Compression(), Encryption(key)]`` compresses, then encrypts, and on receipt
decrypts, then decompresses.  Both peers must configure the same chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["Middleware", "MiddlewareChain"]


@runtime_checkable
class Middleware(Protocol):
    name: str

    async def outbound(self, data: bytes) -> bytes: ...

    async def inbound(self, data: bytes) -> bytes: ...


class MiddlewareChain:
    def __init__(self, items: Sequence[Middleware] = ()) -> None:
        self.items = tuple(items)

    def __bool__(self) -> bool:
        return bool(self.items)

    async def outbound(self, data: bytes) -> bytes:
        for item in self.items:
            data = await item.outbound(data)
        return data

    async def inbound(self, data: bytes) -> bytes:
        for item in reversed(self.items):
            data = await item.inbound(data)
        return data
