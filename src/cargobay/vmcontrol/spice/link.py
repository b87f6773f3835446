"""The Spice link stage, sans-IO: every byte from TCP connect to "channel linked".

Each Spice channel is its own TCP (or TLS) connection and starts with the same exchange:

    client                                         server
    SpiceLinkHeader("REDQ", 2, 2, size)
    SpiceLinkMess(connection_id, channel type/id,
                  common caps, channel caps)   ->
                                               <-  SpiceLinkHeader + SpiceLinkReply(error,
                                                   162-byte RSA-1024 public key (DER
                                                   SubjectPublicKeyInfo), caps)
    [SpiceLinkAuthMechanism(AUTH_SPICE)]        ->  only if both sides have
                                                   PROTOCOL_AUTH_SELECTION
    ticket: RSA-OAEP(SHA-1)(password + NUL)    ->  always 128 bytes
                                               <-  u32 SpiceLinkErr (OK = linked)

``SpiceLink`` holds that conversation as an explicit state machine, h11 style: the
adapter calls ``start()`` and writes the bytes, feeds what it reads to ``receive_data``,
and pulls ``next_event()`` until it gets ``Linked`` (after answering ``LinkReplyReceived``
with ``send_ticket()``).  Every transition is in this module.  A refused link raises a
typed error: ``SpiceAuthError`` for a wrong password (PERMISSION_DENIED) or a server that
only offers SASL, ``SpiceLinkError`` for the other link errors.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cargobay.vmcontrol.spice.constants import (
    MAGIC,
    MAX_PASSWORD_LENGTH,
    TICKET_ENCRYPTED_BYTES,
    TICKET_PUBKEY_BYTES,
    VERSION_MAJOR,
    VERSION_MINOR,
    ChannelType,
    CommonCap,
    LinkErr,
)
from cargobay.vmcontrol.spice.errors import (
    SpiceAuthError,
    SpiceLinkError,
    SpiceProtocolError,
    SpiceUsageError,
)

__all__ = [
    "NEED_DATA",
    "LinkMess",
    "LinkReply",
    "LinkReplyReceived",
    "LinkState",
    "Linked",
    "NeedData",
    "SpiceLink",
    "caps_from_words",
    "caps_to_words",
    "encrypt_ticket",
    "parse_link_reply",
]

_HEADER = struct.Struct("<4sIII")  # magic, major, minor, size
_MESS = struct.Struct("<IBBIII")  # connection_id, type, id, n_common, n_channel, caps_offset
_REPLY = struct.Struct(f"<I{TICKET_PUBKEY_BYTES}sIII")  # error, pub_key, n_common, n_chan, off
_U32 = struct.Struct("<I")
MAX_REPLY_SIZE = 64 * 1024  # a real reply is 178 bytes plus a few caps words


def caps_to_words(caps: Iterable[int]) -> list[int]:
    """Capability bit numbers -> the u32 words of the wire (bit n is word n//32, bit n%32)."""
    words: list[int] = []
    for cap in caps:
        if cap < 0:
            raise SpiceUsageError(f"negative capability bit {cap}")
        while len(words) <= cap // 32:
            words.append(0)
        words[cap // 32] |= 1 << (cap % 32)
    return words


def caps_from_words(words: Iterable[int]) -> frozenset[int]:
    return frozenset(
        i * 32 + bit for i, word in enumerate(words) for bit in range(32) if word >> bit & 1
    )


@dataclass(frozen=True, slots=True)
class LinkMess:
    """What the client says about the channel it wants (SpiceLinkMess)."""

    channel_type: int
    channel_id: int = 0
    connection_id: int = 0
    common_caps: frozenset[int] = frozenset()
    channel_caps: frozenset[int] = frozenset()

    def encode(self) -> bytes:
        """SpiceLinkHeader + SpiceLinkMess + caps, byte-exact."""
        common = caps_to_words(self.common_caps)
        channel = caps_to_words(self.channel_caps)
        body = _MESS.pack(
            self.connection_id,
            self.channel_type,
            self.channel_id,
            len(common),
            len(channel),
            _MESS.size,  # caps_offset counts from the start of SpiceLinkMess
        ) + b"".join(_U32.pack(w) for w in common + channel)
        return _HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, len(body)) + body


@dataclass(frozen=True, slots=True)
class LinkReply:
    """The server's SpiceLinkReply (only ever built for error == OK)."""

    pubkey_der: bytes
    common_caps: frozenset[int]
    channel_caps: frozenset[int]
    minor_version: int = VERSION_MINOR

    def public_key(self) -> rsa.RSAPublicKey:
        try:
            key = serialization.load_der_public_key(self.pubkey_der)
        except (ValueError, UnsupportedAlgorithm) as err:
            raise SpiceProtocolError(
                f"the link reply's public key is not a usable DER key: {err}"
            ) from err
        if not isinstance(key, rsa.RSAPublicKey):
            raise SpiceProtocolError(f"the link reply's key is {type(key).__name__}, not RSA")
        return key


def _check_header(data: bytes) -> int:
    magic, major, minor, size = _HEADER.unpack(data)
    if magic != MAGIC:
        raise SpiceProtocolError(f"not a Spice server: link reply starts with {magic!r}, not REDQ")
    if major != VERSION_MAJOR:
        raise SpiceLinkError(
            f"Spice protocol version mismatch: server speaks {major}.{minor}, client 2.2",
            LinkErr.VERSION_MISMATCH,
        )
    if size > MAX_REPLY_SIZE:
        raise SpiceProtocolError(f"link reply of {size} bytes (limit {MAX_REPLY_SIZE})")
    return int(size)


def link_error(code: int, what: str) -> SpiceLinkError:
    """The typed error for a SpiceLinkErr code the server answered."""
    known: LinkErr | None
    try:
        known = LinkErr(code)
        name = known.name
    except ValueError:
        known, name = None, f"unknown error {code}"
    if code == LinkErr.PERMISSION_DENIED:
        return SpiceAuthError(
            f"{what}: the Spice server denied access (PERMISSION_DENIED): wrong or expired "
            "password; check the password (QEMU: -spice password-secret=...)",
            code,
        )
    hints = {
        LinkErr.NEED_SECURED: "this channel needs TLS: connect to the tls-port",
        LinkErr.NEED_UNSECURED: "this channel must not use TLS: connect to the plain port",
        LinkErr.BAD_CONNECTION_ID: "link the main channel first and reuse its session id",
        LinkErr.CHANNEL_NOT_AVAILABLE: "the server has no such channel (see CHANNELS_LIST)",
        LinkErr.VERSION_MISMATCH: "the server does not speak Spice 2.x",
    }
    hint = hints.get(known, "see the server's log") if known is not None else "see its log"
    return SpiceLinkError(f"{what}: the Spice server refused the link ({name}); {hint}", code)


def parse_link_reply(body: bytes) -> LinkReply:
    """Decode a SpiceLinkReply (the bytes after its SpiceLinkHeader).

    Raises ``SpiceLinkError``/``SpiceAuthError`` if the reply carries an error and
    ``SpiceProtocolError`` if it is malformed."""
    if len(body) < 4:
        raise SpiceProtocolError(f"link reply of {len(body)} bytes is too short")
    (error,) = _U32.unpack_from(body)
    if error != LinkErr.OK:
        raise link_error(error, "link")
    if len(body) < _REPLY.size:
        raise SpiceProtocolError(f"link reply of {len(body)} bytes, expected >= {_REPLY.size}")
    _, pubkey, n_common, n_channel, offset = _REPLY.unpack_from(body)
    end = offset + 4 * (n_common + n_channel)
    if offset < _REPLY.size or end > len(body):
        raise SpiceProtocolError(
            f"link reply caps ({n_common}+{n_channel} words at {offset}) overrun its "
            f"{len(body)} bytes"
        )
    words = [_U32.unpack_from(body, offset + 4 * i)[0] for i in range(n_common + n_channel)]
    return LinkReply(
        pubkey_der=bytes(pubkey),
        common_caps=caps_from_words(words[:n_common]),
        channel_caps=caps_from_words(words[n_common:]),
    )


def encrypt_ticket(public_key: rsa.RSAPublicKey, password: str) -> bytes:
    """The Spice ticket: RSA-OAEP (SHA-1, MGF1-SHA-1) of the NUL-terminated password."""
    raw = password.encode()
    if len(raw) > MAX_PASSWORD_LENGTH:
        raise SpiceUsageError(
            f"Spice password of {len(raw)} bytes: the server accepts at most {MAX_PASSWORD_LENGTH}"
        )
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    try:
        ticket = public_key.encrypt(raw + b"\0", oaep)
    except ValueError as err:  # a key too small for OAEP-SHA-1 of this password
        raise SpiceProtocolError(
            f"cannot encrypt the ticket with the server's {public_key.key_size}-bit key: {err}"
        ) from err
    if len(ticket) != TICKET_ENCRYPTED_BYTES:
        raise SpiceProtocolError(
            f"the server's RSA key is {public_key.key_size} bits; Spice tickets need 1024"
        )
    return ticket


class LinkState(enum.Enum):
    IDLE = "idle"  # nothing sent yet
    WAIT_REPLY = "wait-reply"  # SpiceLinkMess sent
    REPLY_RECEIVED = "reply-received"  # the key is known; the ticket is ours to send
    WAIT_RESULT = "wait-result"  # ticket sent
    LINKED = "linked"
    FAILED = "failed"


class NeedData:
    """``next_event`` needs more bytes (a singleton, like h11.NEED_DATA)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class LinkReplyReceived:
    reply: LinkReply


@dataclass(frozen=True, slots=True)
class Linked:
    """The channel is linked; ``common_caps``/``channel_caps`` are the agreed ones."""

    common_caps: frozenset[int]
    channel_caps: frozenset[int]
    server_channel_caps: frozenset[int] = field(default=frozenset())

    @property
    def mini_header(self) -> bool:
        return CommonCap.MINI_HEADER in self.common_caps


LinkEvent = LinkReplyReceived | Linked | NeedData


class SpiceLink:
    """The link of one channel.  ``connection_id`` is 0 for main, else the session id."""

    def __init__(
        self,
        channel_type: ChannelType | int,
        channel_id: int = 0,
        *,
        connection_id: int = 0,
        password: str = "",
        channel_caps: Iterable[int] = (),
        mini_header: bool = True,
    ) -> None:
        common = {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE}
        if mini_header:
            common.add(CommonCap.MINI_HEADER)
        self.mess = LinkMess(
            channel_type=int(channel_type),
            channel_id=channel_id,
            connection_id=connection_id,
            common_caps=frozenset(int(c) for c in common),
            channel_caps=frozenset(channel_caps),
        )
        self.password = password
        self.state = LinkState.IDLE
        self.reply: LinkReply | None = None
        self._buf = bytearray()
        self._reply_size: int | None = None

    def _require(self, *states: LinkState) -> None:
        if self.state not in states:
            wanted = " or ".join(s.value for s in states)
            raise SpiceUsageError(f"Spice link is {self.state.value}, not {wanted}")

    def _fail(self, err: Exception) -> Exception:
        self.state = LinkState.FAILED
        return err

    def start(self) -> bytes:
        """IDLE -> WAIT_REPLY: the SpiceLinkHeader + SpiceLinkMess to send."""
        self._require(LinkState.IDLE)
        self.state = LinkState.WAIT_REPLY
        return self.mess.encode()

    def receive_data(self, data: bytes) -> None:
        if self.state is LinkState.FAILED:
            raise SpiceUsageError("Spice link failed; open a new connection")
        self._buf += data

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the link result: the first channel messages."""
        self._require(LinkState.LINKED)
        return bytes(self._buf)

    def next_event(self) -> LinkEvent:
        if self.state is LinkState.WAIT_REPLY:
            return self._read_reply()
        if self.state is LinkState.WAIT_RESULT:
            return self._read_result()
        if self.state is LinkState.FAILED:
            raise SpiceUsageError("Spice link failed; open a new connection")
        return NEED_DATA  # IDLE, REPLY_RECEIVED (our move), LINKED (nothing more)

    def _read_reply(self) -> LinkEvent:
        try:
            if self._reply_size is None:
                if len(self._buf) < _HEADER.size:
                    return NEED_DATA
                self._reply_size = _check_header(bytes(self._buf[: _HEADER.size]))
                del self._buf[: _HEADER.size]
            if len(self._buf) < self._reply_size:
                return NEED_DATA
            body = bytes(self._buf[: self._reply_size])
            del self._buf[: self._reply_size]
            reply = parse_link_reply(body)
        except (SpiceLinkError, SpiceProtocolError) as err:
            raise self._fail(err) from None
        self.reply = reply
        self.state = LinkState.REPLY_RECEIVED
        return LinkReplyReceived(reply)

    def uses_auth_selection(self) -> bool:
        self._require(LinkState.REPLY_RECEIVED, LinkState.WAIT_RESULT, LinkState.LINKED)
        assert self.reply is not None
        return CommonCap.PROTOCOL_AUTH_SELECTION in self.reply.common_caps

    def send_ticket(self) -> bytes:
        """REPLY_RECEIVED -> WAIT_RESULT: [SpiceLinkAuthMechanism] + the encrypted ticket."""
        self._require(LinkState.REPLY_RECEIVED)
        assert self.reply is not None
        out = b""
        if self.uses_auth_selection():
            caps = self.reply.common_caps
            if CommonCap.AUTH_SPICE not in caps:
                what = "SASL" if CommonCap.AUTH_SASL in caps else "no known mechanism"
                raise self._fail(
                    SpiceAuthError(
                        f"the Spice server offers {what}, not Spice ticket authentication "
                        "(SASL is not supported by this client)",
                        LinkErr.PERMISSION_DENIED,
                    )
                )
            out += _U32.pack(CommonCap.AUTH_SPICE)
        try:
            out += encrypt_ticket(self.reply.public_key(), self.password)
        except (SpiceProtocolError, SpiceUsageError) as err:
            raise self._fail(err) from None
        self.state = LinkState.WAIT_RESULT
        return out

    def _read_result(self) -> LinkEvent:
        if len(self._buf) < 4:
            return NEED_DATA
        (result,) = _U32.unpack_from(self._buf)
        del self._buf[:4]
        if result != LinkErr.OK:
            raise self._fail(link_error(result, f"channel {self._channel_name()}"))
        assert self.reply is not None
        self.state = LinkState.LINKED
        return Linked(
            common_caps=self.mess.common_caps & self.reply.common_caps,
            channel_caps=self.mess.channel_caps & self.reply.channel_caps,
            server_channel_caps=self.reply.channel_caps,
        )

    def _channel_name(self) -> str:
        try:
            name = ChannelType(self.mess.channel_type).name.lower()
        except ValueError:
            name = f"type {self.mess.channel_type}"
        return f"{name}:{self.mess.channel_id}"
