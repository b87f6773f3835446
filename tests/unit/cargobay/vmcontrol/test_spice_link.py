"""The Spice link stage, byte-exact against hand-built structures of spice/protocol.h."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cargobay.errors import VMControlError
from cargobay.vmcontrol.spice.constants import ChannelType, LinkErr
from cargobay.vmcontrol.spice.errors import (
    SpiceAuthError,
    SpiceLinkError,
    SpiceProtocolError,
    SpiceUsageError,
)
from cargobay.vmcontrol.spice.link import (
    NEED_DATA,
    Linked,
    LinkMess,
    LinkReplyReceived,
    LinkState,
    SpiceLink,
    caps_from_words,
    caps_to_words,
    encrypt_ticket,
    parse_link_reply,
)

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def pubkey_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def server_reply(
    key: rsa.RSAPrivateKey | None,
    common: list[int],
    channel: list[int],
    error: int = 0,
    major: int = 2,
) -> bytes:
    """SpiceLinkHeader + SpiceLinkReply as a server builds it, field by field."""
    der = pubkey_der(key) if key is not None else b"\0" * 162
    body = (
        struct.pack("<I", error)
        + der
        + struct.pack("<III", len(common), len(channel), 4 + 162 + 12)
        + b"".join(struct.pack("<I", w) for w in common + channel)
    )
    return b"REDQ" + struct.pack("<III", major, 2, len(body)) + body


def test_public_key_is_162_bytes(key: rsa.RSAPrivateKey) -> None:
    assert len(pubkey_der(key)) == 162


def test_link_mess_is_byte_exact() -> None:
    mess = LinkMess(
        channel_type=ChannelType.INPUTS,
        channel_id=0,
        connection_id=0x11223344,
        common_caps=frozenset({0, 1, 3}),
        channel_caps=frozenset({0}),
    )
    expected = (
        b"REDQ"
        + b"\x02\x00\x00\x00"  # major
        + b"\x02\x00\x00\x00"  # minor
        + b"\x1a\x00\x00\x00"  # size: 18 + 2 caps words
        + b"\x44\x33\x22\x11"  # connection_id
        + b"\x03"  # channel_type INPUTS
        + b"\x00"  # channel_id
        + b"\x01\x00\x00\x00"  # num_common_caps
        + b"\x01\x00\x00\x00"  # num_channel_caps
        + b"\x12\x00\x00\x00"  # caps_offset = sizeof(SpiceLinkMess)
        + b"\x0b\x00\x00\x00"  # common: AUTH_SELECTION | AUTH_SPICE | MINI_HEADER
        + b"\x01\x00\x00\x00"  # channel: bit 0
    )
    assert mess.encode() == expected


def test_start_sends_our_caps() -> None:
    link = SpiceLink(ChannelType.MAIN, password="x")
    out = link.start()
    assert out[:16] == b"REDQ" + struct.pack("<III", 2, 2, 18 + 4)
    assert out[16:22] == b"\0\0\0\0\x01\x00"
    assert struct.unpack_from("<I", out, 34)[0] == 0b1011
    assert link.state is LinkState.WAIT_REPLY
    with pytest.raises(SpiceUsageError):
        link.start()


def test_without_mini_header_cap() -> None:
    out = SpiceLink(ChannelType.MAIN, mini_header=False).start()
    assert struct.unpack_from("<I", out, 34)[0] == 0b0011


def test_caps_words_round_trip() -> None:
    assert caps_to_words([0, 3, 33]) == [0b1001, 0b10]
    assert caps_from_words([0b1001, 0b10]) == {0, 3, 33}
    assert caps_to_words([]) == []


def run_link(link: SpiceLink, reply: bytes, chunk: int = 7) -> tuple[LinkReplyReceived, bytes]:
    link.start()
    assert link.next_event() is NEED_DATA
    event: object = NEED_DATA
    for i in range(0, len(reply), chunk):
        assert event is NEED_DATA
        link.receive_data(reply[i : i + chunk])
        event = link.next_event()
    assert isinstance(event, LinkReplyReceived)
    assert link.state is LinkState.REPLY_RECEIVED
    return event, link.send_ticket()


def test_full_link_with_auth_selection(key: rsa.RSAPrivateKey) -> None:
    link = SpiceLink(ChannelType.MAIN, password="s3cret")
    event, out = run_link(link, server_reply(key, [0b1011], [0b1111]))
    assert event.reply.common_caps == {0, 1, 3}
    assert event.reply.channel_caps == {0, 1, 2, 3}
    # SpiceLinkAuthMechanism(SPICE_COMMON_CAP_AUTH_SPICE), then the 128-byte ticket.
    assert out[:4] == b"\x01\x00\x00\x00"
    assert len(out) == 4 + 128
    assert key.decrypt(out[4:], OAEP) == b"s3cret\0"
    assert link.state is LinkState.WAIT_RESULT
    assert link.next_event() is NEED_DATA
    link.receive_data(b"\0\0")
    assert link.next_event() is NEED_DATA
    link.receive_data(b"\0\0" + b"\x06\x00first")
    linked = link.next_event()
    assert isinstance(linked, Linked)
    assert linked.mini_header
    assert linked.common_caps == {0, 1, 3}
    assert link.trailing_data == b"\x06\x00first"
    assert link.next_event() is NEED_DATA


def test_old_server_gets_only_the_ticket(key: rsa.RSAPrivateKey) -> None:
    link = SpiceLink(ChannelType.INPUTS, password="")
    _, out = run_link(link, server_reply(key, [0b0010], []))
    assert len(out) == 128
    assert key.decrypt(out, OAEP) == b"\0"
    link.receive_data(b"\0\0\0\0")
    linked = link.next_event()
    assert isinstance(linked, Linked)
    assert not linked.mini_header


def test_sasl_only_server_is_an_auth_error(key: rsa.RSAPrivateKey) -> None:
    link = SpiceLink(ChannelType.MAIN, password="pw")
    link.start()
    link.receive_data(server_reply(key, [0b0101], []))
    assert isinstance(link.next_event(), LinkReplyReceived)
    with pytest.raises(SpiceAuthError, match="SASL"):
        link.send_ticket()
    assert link.state is LinkState.FAILED


def test_wrong_password_result_is_auth_error(key: rsa.RSAPrivateKey) -> None:
    link = SpiceLink(ChannelType.MAIN, password="wrong")
    run_link(link, server_reply(key, [0b1011], []))
    link.receive_data(struct.pack("<I", LinkErr.PERMISSION_DENIED))
    with pytest.raises(SpiceAuthError, match="PERMISSION_DENIED") as info:
        link.next_event()
    assert info.value.link_error == LinkErr.PERMISSION_DENIED
    assert isinstance(info.value, VMControlError)
    assert link.state is LinkState.FAILED
    with pytest.raises(SpiceUsageError):
        link.next_event()
    with pytest.raises(SpiceUsageError):
        link.receive_data(b"x")


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (LinkErr.BAD_CONNECTION_ID, "main channel first"),
        (LinkErr.NEED_SECURED, "tls-port"),
        (LinkErr.CHANNEL_NOT_AVAILABLE, "CHANNELS_LIST"),
        (99, "unknown error 99"),
    ],
)
def test_error_in_reply_is_a_link_error(code: int, hint: str) -> None:
    link = SpiceLink(ChannelType.DISPLAY, connection_id=5)
    link.start()
    link.receive_data(server_reply(None, [], [], error=code))
    with pytest.raises(SpiceLinkError, match=hint) as info:
        link.next_event()
    assert not isinstance(info.value, SpiceAuthError)
    assert info.value.link_error == code


def test_not_a_spice_server() -> None:
    link = SpiceLink(ChannelType.MAIN)
    link.start()
    link.receive_data(b"RFB 003.008\n\0\0\0\0")
    with pytest.raises(SpiceProtocolError, match="REDQ"):
        link.next_event()


def test_version_mismatch(key: rsa.RSAPrivateKey) -> None:
    link = SpiceLink(ChannelType.MAIN)
    link.start()
    link.receive_data(server_reply(key, [], [], major=1))
    with pytest.raises(SpiceLinkError, match=r"1\.2") as info:
        link.next_event()
    assert info.value.link_error == LinkErr.VERSION_MISMATCH


def test_caps_overrun_and_short_reply(key: rsa.RSAPrivateKey) -> None:
    good = server_reply(key, [1], [1])[16:]
    bad = bytearray(good)
    struct.pack_into("<I", bad, 4 + 162, 1000)  # num_common_caps beyond the body
    with pytest.raises(SpiceProtocolError, match="overrun"):
        parse_link_reply(bytes(bad))
    with pytest.raises(SpiceProtocolError, match="too short"):
        parse_link_reply(b"\0\0")
    with pytest.raises(SpiceProtocolError, match="expected"):
        parse_link_reply(good[:100])


def test_huge_reply_size_is_refused() -> None:
    link = SpiceLink(ChannelType.MAIN)
    link.start()
    link.receive_data(b"REDQ" + struct.pack("<III", 2, 2, 1 << 30))
    with pytest.raises(SpiceProtocolError, match="limit"):
        link.next_event()


def test_garbage_key_is_a_protocol_error() -> None:
    link = SpiceLink(ChannelType.MAIN, password="pw")
    link.start()
    link.receive_data(server_reply(None, [0b1011], []))
    assert isinstance(link.next_event(), LinkReplyReceived)
    with pytest.raises(SpiceProtocolError, match="DER"):
        link.send_ticket()


def test_password_limits(key: rsa.RSAPrivateKey) -> None:
    ticket = encrypt_ticket(key.public_key(), "p" * 60)
    assert key.decrypt(ticket, OAEP) == b"p" * 60 + b"\0"
    with pytest.raises(SpiceUsageError, match="at most 60"):
        encrypt_ticket(key.public_key(), "p" * 61)


def test_ticket_with_a_2048_bit_key_is_refused() -> None:
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SpiceProtocolError, match="2048 bits"):
        encrypt_ticket(big.public_key(), "pw")
