"""Middleware between the application and the protocol layer (seed 001, 7.3).

Each middleware transforms whole messages: ``outbound`` on the way to the transport,
``inbound`` on the way back.  A chain applies outbound in order and inbound in reverse,
so ``[Compression(), Encryption(key)]`` compresses, then encrypts, and on receipt
decrypts, then decompresses.  Both peers must configure the same chain (``RateLimit``
alone changes nothing on the wire and may be one-sided).  Compress before encrypting:
ciphertext does not compress.

* ``Compression`` — zlib, behind a 1-byte flag so that small or incompressible messages
  travel as they are; inflating is bounded by ``max_size`` (a decompression bomb is an
  error, not an out-of-memory).
* ``Encryption`` — authenticated encryption with a 32-byte pre-shared key
  (ChaCha20-Poly1305 or AES-256-GCM from ``cryptography``).  Envelope:
  ``version (1) | algorithm (1) | nonce (12) | ciphertext | tag (16)``; the nonce is
  random per message and the two header bytes are authenticated as associated data.
  A wrong key, a changed byte, a truncated or an unencrypted message all raise
  ``AuthenticationError``.  It does not stop replays or reordering within a session
  (the byte stream below is already ordered and reliable) and it is not a handshake:
  there is no forward secrecy, rotate the key by reconfiguring both peers.
* ``RateLimit`` — a token bucket on outbound bytes: ``send`` waits for tokens.  A
  message larger than the burst still goes (the bucket goes negative and later
  messages wait longer), so nothing can deadlock.

Middleware objects may be stateful (the bucket, the message counter) and are shared by
everything that uses the same config: one ``RateLimit`` in a ``ServerConfig`` limits
the server's outbound traffic as a whole, one in a ``ClientConfig`` shared by a
connection pool limits the pool.

Receiving errors are ``MiddlewareError`` (``AuthenticationError`` for encryption); the
message is dropped but the connection stays usable.  An exception of any other type
raised by a custom middleware is wrapped in ``MiddlewareError`` naming the middleware.
"""

from __future__ import annotations

import asyncio
import math
import os
import zlib
from collections.abc import Sequence
from typing import Final, Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from virga.errors import AuthenticationError, ConfigError, MiddlewareError, VirgaError
from virga.transport import DEFAULT_MAX_MESSAGE

__all__ = [
    "Compression",
    "Encryption",
    "EncryptionAlgorithm",
    "Middleware",
    "MiddlewareChain",
    "RateLimit",
]


@runtime_checkable
class Middleware(Protocol):
    name: str

    async def outbound(self, data: bytes) -> bytes: ...

    async def inbound(self, data: bytes) -> bytes: ...


class MiddlewareChain:
    """Applies middleware in order on the way out and in reverse order on the way in."""

    def __init__(self, items: Sequence[Middleware] = ()) -> None:
        for item in items:
            if not isinstance(item, Middleware):
                raise ConfigError(
                    f"{item!r} is not a middleware: it needs a 'name' and async "
                    "'outbound'/'inbound' methods"
                )
        self.items = tuple(items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        return f"<MiddlewareChain {' -> '.join(item.name for item in self.items) or 'empty'}>"

    async def outbound(self, data: bytes) -> bytes:
        for item in self.items:
            data = await _call(item, "outbound", data)
        return data

    async def inbound(self, data: bytes) -> bytes:
        for item in reversed(self.items):
            data = await _call(item, "inbound", data)
        return data


async def _call(item: Middleware, direction: Literal["outbound", "inbound"], data: bytes) -> bytes:
    try:
        if direction == "outbound":
            return await item.outbound(data)
        return await item.inbound(data)
    except VirgaError:
        raise
    except Exception as err:  # a custom middleware's bug; CancelledError is not an Exception
        raise MiddlewareError(
            f"middleware {item.name!r} failed on an {direction} message: {err!r}"
        ) from err


# --- compression -------------------------------------------------------------------------

_RAW: Final = 0x00
_ZLIB: Final = 0x01
_FLAG_RAW: Final = bytes([_RAW])
_FLAG_ZLIB: Final = bytes([_ZLIB])
OFFLOAD_SIZE: Final = 1 << 20
"""Messages at least this large are deflated in a worker thread (zlib releases the GIL),
so one big message does not stall the event loop for a quarter of a second."""


class Compression:
    """zlib compression behind a 1-byte flag (0: stored as is, 1: deflated).

    Messages shorter than ``min_size``, and messages that deflate to no less than their
    own size, are stored.  ``max_size`` bounds what ``inbound`` inflates to; set it to
    the largest message the application sends.
    """

    name = "compression"

    def __init__(
        self, level: int = 6, min_size: int = 256, *, max_size: int = DEFAULT_MAX_MESSAGE
    ) -> None:
        if not -1 <= level <= 9:
            raise ConfigError(f"compression level={level} must be in -1..9 (zlib levels)")
        if min_size < 0:
            raise ConfigError(f"compression min_size={min_size} must not be negative")
        if max_size < 1:
            raise ConfigError(f"compression max_size={max_size} must be positive")
        self.level = level
        self.min_size = min_size
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"Compression(level={self.level}, min_size={self.min_size})"

    async def outbound(self, data: bytes) -> bytes:
        if len(data) < self.min_size:
            return _FLAG_RAW + data
        if len(data) >= OFFLOAD_SIZE:
            packed = await asyncio.to_thread(zlib.compress, data, self.level)
        else:
            packed = zlib.compress(data, self.level)
        if len(packed) >= len(data):
            return _FLAG_RAW + data
        return _FLAG_ZLIB + packed

    async def inbound(self, data: bytes) -> bytes:
        if not data:
            raise MiddlewareError(
                "compression: received an empty message, expected at least the 1-byte "
                "flag; configure Compression on both peers, in the same chain position"
            )
        flag = data[0]
        if flag == _RAW:
            return data[1:]
        if flag != _ZLIB:
            raise MiddlewareError(
                f"compression: unknown flag byte 0x{flag:02x}; the peer's middleware chain "
                "differs from this one (members or order)"
            )
        return self._inflate(memoryview(data)[1:])

    def _inflate(self, packed: memoryview) -> bytes:
        inflater = zlib.decompressobj()
        try:
            # One byte over the limit is enough to know the limit was passed.
            out = inflater.decompress(packed, self.max_size + 1)
        except zlib.error as err:
            raise MiddlewareError(
                f"compression: corrupt deflate data in a {len(packed) + 1}-byte message "
                f"({err}); the peers' middleware chains probably differ"
            ) from err
        if len(out) > self.max_size:
            raise MiddlewareError(
                f"compression: a {len(packed) + 1}-byte message inflates to more than "
                f"max_size={self.max_size} bytes (a decompression bomb, or raise max_size "
                "on the receiver)"
            )
        if not inflater.eof:
            raise MiddlewareError(
                f"compression: deflate data in a {len(packed) + 1}-byte message ends early "
                "(truncated message)"
            )
        if inflater.unused_data:
            raise MiddlewareError(
                f"compression: {len(inflater.unused_data)} stray bytes after the deflate "
                "data; the peers' middleware chains probably differ"
            )
        return out


# --- authenticated encryption ------------------------------------------------------------

EncryptionAlgorithm = Literal["chacha20-poly1305", "aes-256-gcm"]

_ALGORITHM_IDS: Final[dict[str, int]] = {"chacha20-poly1305": 1, "aes-256-gcm": 2}
_ALGORITHM_NAMES: Final = {v: k for k, v in _ALGORITHM_IDS.items()}
_ENVELOPE_VERSION: Final = 1
_AAD_PREFIX: Final = b"virga-encryption"
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
_HEADER_SIZE: Final = 2
OVERHEAD: Final = _HEADER_SIZE + NONCE_SIZE + TAG_SIZE
MAX_MESSAGES_PER_KEY: Final = 1 << 32
"""With random 96-bit nonces, NIST SP 800-38D caps one key at 2**32 messages."""


class Encryption:
    """Authenticated encryption of every message with a 32-byte pre-shared key.

    ``algorithm`` is ``"chacha20-poly1305"`` (the default; fast everywhere) or
    ``"aes-256-gcm"`` (fastest with AES-NI).  Make a key with ``Encryption.generate_key()``
    and give both peers the same key and algorithm.  The key is not kept as bytes on the
    object and never appears in its repr or in errors.
    """

    name = "encryption"
    overhead = OVERHEAD

    def __init__(self, key: bytes, algorithm: EncryptionAlgorithm = "chacha20-poly1305") -> None:
        if algorithm not in _ALGORITHM_IDS:
            raise ConfigError(
                f"encryption algorithm {algorithm!r} is not supported; "
                f"use one of {', '.join(sorted(_ALGORITHM_IDS))}"
            )
        if not isinstance(key, bytes | bytearray | memoryview):
            raise ConfigError(
                f"encryption key must be bytes, not {type(key).__name__}; "
                "make one with Encryption.generate_key()"
            )
        if len(key) != KEY_SIZE:
            raise ConfigError(
                f"encryption key must be {KEY_SIZE} bytes, got {len(key)}; "
                "make one with Encryption.generate_key()"
            )
        self.algorithm: EncryptionAlgorithm = algorithm
        self._header = bytes([_ENVELOPE_VERSION, _ALGORITHM_IDS[algorithm]])
        self._aad = _AAD_PREFIX + self._header
        self._aead: ChaCha20Poly1305 | AESGCM = (
            ChaCha20Poly1305(bytes(key)) if algorithm == "chacha20-poly1305" else AESGCM(bytes(key))
        )
        self.sealed = 0
        """Messages encrypted with this key so far."""

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 32-byte key for either algorithm."""
        return os.urandom(KEY_SIZE)

    def __repr__(self) -> str:
        return f"Encryption(algorithm={self.algorithm!r})"

    async def outbound(self, data: bytes) -> bytes:
        if self.sealed >= MAX_MESSAGES_PER_KEY:
            raise MiddlewareError(
                f"encryption: {self.sealed} messages were sealed with this key, the safe "
                "limit for random nonces; rotate the key on both peers"
            )
        self.sealed += 1
        nonce = os.urandom(NONCE_SIZE)
        return self._header + nonce + self._aead.encrypt(nonce, data, self._aad)

    async def inbound(self, data: bytes) -> bytes:
        if len(data) < OVERHEAD:
            raise AuthenticationError(
                f"encryption: a {len(data)}-byte message is shorter than the {OVERHEAD}-byte "
                "envelope (truncated, or the peer does not encrypt)"
            )
        version, algorithm_id = data[0], data[1]
        if version != _ENVELOPE_VERSION:
            raise AuthenticationError(
                f"encryption: envelope version {version} is not {_ENVELOPE_VERSION} (the "
                "peer does not encrypt, runs an incompatible virga, or the message was altered)"
            )
        if algorithm_id != self._header[1]:
            peer = _ALGORITHM_NAMES.get(algorithm_id, f"unknown algorithm {algorithm_id}")
            raise AuthenticationError(
                f"encryption: the message was sealed with {peer}, this side expects "
                f"{self.algorithm}; configure the same algorithm on both peers"
            )
        nonce = data[_HEADER_SIZE : _HEADER_SIZE + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, data[_HEADER_SIZE + NONCE_SIZE :], self._aad)
        except InvalidTag as err:
            raise AuthenticationError(
                f"encryption: a {len(data)}-byte message failed authentication: the peers "
                "use different keys, or the message was altered in transit"
            ) from err


# --- rate limiting -----------------------------------------------------------------------


class RateLimit:
    """A token bucket on outbound bytes: at most ``burst + bytes_per_second * t`` bytes
    leave in any ``t`` seconds (plus, once, the excess of a message larger than ``burst``).

    ``outbound`` waits until the bucket holds ``min(len(message), burst)`` tokens, then
    takes ``len(message)``: a message larger than the burst passes when the bucket is
    full and leaves it negative.  Waiters are served in order.  The bucket starts full;
    ``burst`` defaults to one second's worth.  ``inbound`` passes messages through.
    """

    name = "rate-limit"

    def __init__(self, bytes_per_second: float, burst: int | None = None) -> None:
        if not (math.isfinite(bytes_per_second) and bytes_per_second > 0):
            raise ConfigError(
                f"rate limit bytes_per_second={bytes_per_second} must be a positive number"
            )
        if burst is None:
            burst = max(1, math.ceil(bytes_per_second))
        if burst < 1:
            raise ConfigError(f"rate limit burst={burst} must be at least 1 byte")
        self.rate = float(bytes_per_second)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._lock = asyncio.Lock()
        self.waited = 0.0
        """Total seconds ``outbound`` has spent waiting for tokens."""

    def __repr__(self) -> str:
        return f"RateLimit(bytes_per_second={self.rate:g}, burst={self.burst})"

    @property
    def tokens(self) -> float:
        """Tokens at the last refill (negative after a message larger than the burst)."""
        return self._tokens

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def outbound(self, data: bytes) -> bytes:
        need = min(len(data), self.burst)
        loop = asyncio.get_running_loop()
        async with self._lock:
            self._refill(loop.time())
            while self._tokens < need:
                # The loop may wake a timer up to its clock resolution early: re-check.
                wait = (need - self._tokens) / self.rate
                start = loop.time()
                await asyncio.sleep(wait)
                self._refill(loop.time())
                self.waited += loop.time() - start
            self._tokens -= len(data)
        return data

    async def inbound(self, data: bytes) -> bytes:
        return data
