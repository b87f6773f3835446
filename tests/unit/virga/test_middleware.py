"""virga.middleware without sockets: round trips, the wire envelope, and every failure mode."""

from __future__ import annotations

import asyncio
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virga.errors import (
    AuthenticationError,
    ConfigError,
    MiddlewareError,
    TransportError,
    VirgaError,
)
from virga.middleware import (
    OVERHEAD,
    Compression,
    Encryption,
    Middleware,
    MiddlewareChain,
    RateLimit,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ALGORITHMS = ["chacha20-poly1305", "aes-256-gcm"]


def test_error_hierarchy() -> None:
    assert issubclass(AuthenticationError, MiddlewareError)
    assert issubclass(MiddlewareError, TransportError)
    assert issubclass(MiddlewareError, VirgaError)


def test_builtins_satisfy_the_protocol() -> None:
    for item in (Compression(), Encryption(KEY), RateLimit(1000)):
        assert isinstance(item, Middleware)


# --- compression -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096), level=st.integers(-1, 9), min_size=st.integers(0, 600))
async def test_compression_round_trip(data: bytes, level: int, min_size: int) -> None:
    comp = Compression(level=level, min_size=min_size)
    wire = await comp.outbound(data)
    assert await comp.inbound(wire) == data
    assert len(wire) <= len(data) + 1  # never more than the flag byte of overhead


async def test_compression_small_messages_are_stored() -> None:
    comp = Compression(min_size=256)
    data = b"a" * 255
    assert await comp.outbound(data) == b"\x00" + data


async def test_compression_compresses_repetitive_data() -> None:
    comp = Compression()
    data = b"virga " * 10_000
    wire = await comp.outbound(data)
    assert wire[0] == 1
    assert len(wire) < len(data) // 20
    assert zlib.decompress(wire[1:]) == data


async def test_compression_incompressible_data_is_stored() -> None:
    comp = Compression()
    data = os.urandom(10_000)
    assert await comp.outbound(data) == b"\x00" + data


async def test_compression_large_message_is_deflated_off_loop() -> None:
    comp = Compression()
    data = b"0123456789abcdef" * 200_000  # 3.2 MB, over OFFLOAD_SIZE
    wire = await comp.outbound(data)
    assert wire[0] == 1
    assert await comp.inbound(wire) == data


async def test_compression_decompression_bomb_is_refused() -> None:
    comp = Compression(max_size=1 << 20)
    bomb = b"\x01" + zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB in ~65 KB
    assert len(bomb) < 100_000
    with pytest.raises(MiddlewareError, match="decompression bomb"):
        await comp.inbound(bomb)


async def test_compression_exact_max_size_is_accepted() -> None:
    comp = Compression(max_size=1000)
    assert await comp.inbound(b"\x01" + zlib.compress(b"x" * 1000)) == b"x" * 1000
    with pytest.raises(MiddlewareError, match="max_size=1000"):
        await comp.inbound(b"\x01" + zlib.compress(b"x" * 1001))


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"", "empty message"),
        (b"\x07hello", "unknown flag byte 0x07"),
        (b"\x01not deflate at all", "corrupt deflate"),
        (b"\x01" + zlib.compress(b"hello world" * 100)[:-6], "ends early"),
        (b"\x01" + zlib.compress(b"hello") + b"junk", "stray bytes"),
    ],
)
async def test_compression_bad_input(wire: bytes, match: str) -> None:
    with pytest.raises(MiddlewareError, match=match):
        await Compression().inbound(wire)


@pytest.mark.parametrize(
    "kwargs", [{"level": 10}, {"level": -2}, {"min_size": -1}, {"max_size": 0}]
)
def test_compression_validation(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Compression(**kwargs)


# --- encryption --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=4096), algorithm=st.sampled_from(ALGORITHMS))
async def test_encryption_round_trip(data: bytes, algorithm: str) -> None:
    sender = Encryption(KEY, algorithm)  # type: ignore[arg-type]
    receiver = Encryption(KEY, algorithm)  # type: ignore[arg-type]
    wire = await sender.outbound(data)
    assert len(wire) == len(data) + OVERHEAD
    assert await receiver.inbound(wire) == data


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_encryption_nonce_is_fresh_per_message(algorithm: str) -> None:
    enc = Encryption(KEY, algorithm)  # type: ignore[arg-type]
    first, second = await enc.outbound(b"same"), await enc.outbound(b"same")
    assert first != second
    assert first[2:14] != second[2:14]
    assert enc.sealed == 2
    assert b"same" not in first


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_encryption_wrong_key(algorithm: str) -> None:
    wire = await Encryption(KEY, algorithm).outbound(b"secret")  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="different keys"):
        await Encryption(OTHER_KEY, algorithm).inbound(wire)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=200), where=st.integers(0), bit=st.integers(0, 7))
async def test_encryption_any_flipped_bit_is_detected(data: bytes, where: int, bit: int) -> None:
    enc = Encryption(KEY)
    wire = bytearray(await enc.outbound(data))
    wire[where % len(wire)] ^= 1 << bit
    with pytest.raises(AuthenticationError):
        await enc.inbound(bytes(wire))


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=200), cut=st.integers(1))
async def test_encryption_truncation_is_detected(data: bytes, cut: int) -> None:
    enc = Encryption(KEY)
    wire = await enc.outbound(data)
    with pytest.raises(AuthenticationError):
        await enc.inbound(wire[: len(wire) - 1 - cut % len(wire)])


async def test_encryption_rejects_short_and_plain_messages() -> None:
    enc = Encryption(KEY)
    with pytest.raises(AuthenticationError, match="shorter than the 30-byte envelope"):
        await enc.inbound(b"hello")
    with pytest.raises(AuthenticationError, match="envelope version 104"):
        await enc.inbound(b"hello, this is a plain text message")


async def test_encryption_algorithm_mismatch_names_both() -> None:
    wire = await Encryption(KEY, "aes-256-gcm").outbound(b"x")
    with pytest.raises(AuthenticationError, match=r"sealed with aes-256-gcm.*chacha20-poly1305"):
        await Encryption(KEY, "chacha20-poly1305").inbound(wire)


async def test_encryption_header_is_authenticated() -> None:
    # Relabel a ChaCha20 message as AES-GCM: the receiver configured for AES-GCM must refuse.
    wire = bytearray(await Encryption(KEY, "chacha20-poly1305").outbound(b"x" * 50))
    wire[1] = 2
    with pytest.raises(AuthenticationError, match="failed authentication"):
        await Encryption(KEY, "aes-256-gcm").inbound(bytes(wire))


def test_encryption_generate_key() -> None:
    first, second = Encryption.generate_key(), Encryption.generate_key()
    assert len(first) == 32
    assert first != second
    Encryption(first)


def test_encryption_repr_hides_the_key() -> None:
    enc = Encryption(KEY)
    assert KEY.hex() not in repr(enc)
    assert repr(KEY) not in repr(enc)
    assert not any(isinstance(v, bytes) and v == KEY for v in vars(enc).values())


@pytest.mark.parametrize(
    ("key", "algorithm", "match"),
    [
        (b"short", "chacha20-poly1305", "must be 32 bytes, got 5"),
        (bytes(33), "aes-256-gcm", "must be 32 bytes, got 33"),
        ("x" * 32, "chacha20-poly1305", "must be bytes, not str"),
        (KEY, "des", "'des' is not supported"),
    ],
)
def test_encryption_validation(key: object, algorithm: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Encryption(key, algorithm)  # type: ignore[arg-type]


# --- chains ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
async def test_chain_compress_then_encrypt_round_trip(data: bytes) -> None:
    out = MiddlewareChain([Compression(min_size=16), Encryption(KEY)])
    back = MiddlewareChain([Compression(min_size=16), Encryption(KEY)])
    assert await back.inbound(await out.outbound(data)) == data


async def test_chain_order_compresses_before_encrypting() -> None:
    chain = MiddlewareChain([Compression(), Encryption(KEY)])
    data = b"compressible " * 1000
    wire = await chain.outbound(data)
    assert len(wire) < len(data) // 10  # compressed first: ciphertext would not shrink
    assert repr(chain) == "<MiddlewareChain compression -> encryption>"


async def test_chain_mismatched_members_fail_typed() -> None:
    wire = await MiddlewareChain([Compression(min_size=0)]).outbound(b"x" * 100)
    with pytest.raises(AuthenticationError):
        await MiddlewareChain([Encryption(KEY)]).inbound(wire)


class _Broken:
    name = "broken"

    async def outbound(self, data: bytes) -> bytes:
        return data

    async def inbound(self, data: bytes) -> bytes:
        raise KeyError("oops")


async def test_chain_wraps_foreign_errors() -> None:
    chain = MiddlewareChain([_Broken()])
    with pytest.raises(MiddlewareError, match="'broken' failed on an inbound") as info:
        await chain.inbound(b"x")
    assert isinstance(info.value.__cause__, KeyError)


def test_chain_rejects_non_middleware() -> None:
    with pytest.raises(ConfigError, match="is not a middleware"):
        MiddlewareChain([object()])  # type: ignore[list-item]


# --- rate limit --------------------------------------------------------------------------


async def test_rate_limit_burst_passes_at_once() -> None:
    limit = RateLimit(1000, burst=5000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await limit.outbound(b"x" * 1000)
    assert limit.waited == 0
    assert loop.time() - start < 0.5
    assert limit.tokens < 1000  # the burst is spent


async def test_rate_limit_waits_for_tokens() -> None:
    rate, burst = 20_000.0, 1000
    limit = RateLimit(rate, burst=burst)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await limit.outbound(b"x" * 1000)
    # 5000 bytes with a 1000-byte burst: at least 4000 bytes wait for refill.
    assert loop.time() - start >= 4000 / rate
    assert limit.waited > 0


async def test_rate_limit_message_larger_than_burst_passes() -> None:
    # A slow rate, so scheduling delays on a loaded machine stay small against it.
    limit = RateLimit(10_000, burst=100)
    loop = asyncio.get_running_loop()
    data = b"y" * 2000
    sent_at = loop.time()
    assert await asyncio.wait_for(limit.outbound(data), 1.0) == data
    refilled = (loop.time() - sent_at) * 10_000
    assert limit.tokens == pytest.approx(-1900 + refilled, abs=20)
    # The debt is paid before the next message: 1900 + 100 tokens at 10 kB/s = 200 ms,
    # less what was refilled meanwhile.
    start = loop.time()
    await limit.outbound(b"z" * 100)
    assert loop.time() - start >= 0.2 - (start - sent_at) - 0.001


async def test_rate_limit_inbound_is_untouched() -> None:
    limit = RateLimit(1, burst=1)
    assert await asyncio.wait_for(limit.inbound(b"q" * 10_000), 0.5) == b"q" * 10_000


async def test_rate_limit_concurrent_senders_share_the_bucket() -> None:
    rate = 50_000.0
    limit = RateLimit(rate, burst=500)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(limit.outbound(b"x" * 500) for _ in range(6)))
    assert loop.time() - start >= 2500 / rate


def test_rate_limit_default_burst_is_one_second() -> None:
    assert RateLimit(12_345.6).burst == 12_346


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, None), (-5, None), (float("inf"), None), (float("nan"), 1), (10, 0)]
)
def test_rate_limit_validation(rate: float, burst: int | None) -> None:
    with pytest.raises(ConfigError):
        RateLimit(rate, burst)
