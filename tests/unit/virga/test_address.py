"""Address strings: every form, every error, and parse(str(addr)) == addr."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virga.address import (
    VMADDR_CID_ANY,
    VMADDR_CID_HOST,
    VMADDR_CID_LOCAL,
    Address,
    HybridVsockAddress,
    SerialAddress,
    TcpAddress,
    UnixAddress,
    VsockAddress,
    parse_address,
)
from virga.errors import ConfigError

U32 = 0xFFFFFFFF


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vsock:3:1024", VsockAddress(3, 1024)),
        ("vsock:0:0", VsockAddress(0, 0)),
        (f"vsock:{U32}:{U32}", VsockAddress(U32, U32)),
        ("vsock:any:5000", VsockAddress(VMADDR_CID_ANY, 5000)),
        ("vsock:ANY:5000", VsockAddress(VMADDR_CID_ANY, 5000)),
        ("vsock:host:5000", VsockAddress(VMADDR_CID_HOST, 5000)),
        ("vsock:local:5000", VsockAddress(VMADDR_CID_LOCAL, 5000)),
        ("hvsock:/run/fc/v.sock:52", HybridVsockAddress("/run/fc/v.sock", 52)),
        ("hvsock:rel/v.sock:1", HybridVsockAddress("rel/v.sock", 1)),
        # The port is after the last colon; the path may hold colons.
        ("hvsock:/tmp/a:b/v.sock:7", HybridVsockAddress("/tmp/a:b/v.sock", 7)),
        ("serial:/dev/vport0p1", SerialAddress("/dev/vport0p1")),
        ("serial:/dev/virtio-ports/org.cb.0", SerialAddress("/dev/virtio-ports/org.cb.0")),
        ("serial:/run/vm/serial.sock", SerialAddress("/run/vm/serial.sock")),
        ("unix:/run/x.sock", UnixAddress("/run/x.sock")),
        ("unix:x.sock", UnixAddress("x.sock")),
        ("unix:/tmp/a:b", UnixAddress("/tmp/a:b")),
        ("unix:@virga-test", UnixAddress("@virga-test")),
        ("tcp:127.0.0.1:7000", TcpAddress("127.0.0.1", 7000)),
        ("tcp:localhost:0", TcpAddress("localhost", 0)),
        ("tcp:example.org:65535", TcpAddress("example.org", 65535)),
        ("tcp:[::1]:7000", TcpAddress("::1", 7000)),
        ("tcp:[fe80::1%eth0]:22", TcpAddress("fe80::1%eth0", 22)),
    ],
)
def test_parse_every_form(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_parse_passes_records_through() -> None:
    addr = TcpAddress("127.0.0.1", 1)
    assert parse_address(addr) is addr


def test_str_forms() -> None:
    assert str(VsockAddress(VMADDR_CID_HOST, 5)) == "vsock:2:5"
    assert str(HybridVsockAddress("/v.sock", 5)) == "hvsock:/v.sock:5"
    assert str(SerialAddress("/dev/vport0p1")) == "serial:/dev/vport0p1"
    assert str(UnixAddress("@n")) == "unix:@n"
    assert str(TcpAddress("::1", 80)) == "tcp:[::1]:80"
    assert str(TcpAddress("10.0.0.1", 80)) == "tcp:10.0.0.1:80"


def test_derived_paths() -> None:
    assert HybridVsockAddress("/run/v.sock", 1024).listen_path == "/run/v.sock_1024"
    assert UnixAddress("@name").socket_path == "\0name"
    assert UnixAddress("@name").abstract
    assert UnixAddress("/a").socket_path == "/a"
    assert not UnixAddress("/a").abstract


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # scheme
        ("", "expected vsock:CID:PORT"),
        ("nocolon", "expected vsock:CID:PORT"),
        ("udp:1.2.3.4:5", "unknown address scheme 'udp'"),
        ("VSOCK:3:5", "unknown address scheme 'VSOCK'"),
        (":3:5", "unknown address scheme ''"),
        # vsock
        ("vsock:", "expected vsock:CID:PORT"),
        ("vsock:3", "expected vsock:CID:PORT"),
        ("vsock:3:", "expected vsock:CID:PORT"),
        ("vsock::5", "expected vsock:CID:PORT"),
        ("vsock:x:5", "bad CID 'x'"),
        ("vsock:-1:5", "bad CID '-1'"),
        ("vsock:3.0:5", "bad CID '3.0'"),
        ("vsock:1:2:3", "bad CID '1:2'"),
        (f"vsock:{U32 + 1}:5", "bad CID 4294967296"),
        ("vsock:3:port", "bad port 'port'"),
        ("vsock:3:-1", "bad port '-1'"),
        ("vsock:3:+5", "bad port '+5'"),
        ("vsock:3: 5", "bad port ' 5'"),
        ("vsock:3:5_0", "bad port '5_0'"),
        ("vsock:3:\uff15", "bad port"),  # a fullwidth digit, which int() would accept
        (f"vsock:3:{U32 + 1}", "bad port 4294967296"),
        # hvsock
        ("hvsock:", "expected hvsock:UDS_PATH:PORT"),
        ("hvsock:/v.sock", "expected hvsock:UDS_PATH:PORT"),
        ("hvsock:5", "expected hvsock:UDS_PATH:PORT"),
        ("hvsock::5", "expected hvsock:UDS_PATH:PORT"),
        ("hvsock:/v.sock:", "expected hvsock:UDS_PATH:PORT"),
        ("hvsock:/v.sock:x", "bad port 'x'"),
        (f"hvsock:/v.sock:{U32 + 1}", "bad port 4294967296"),
        ("hvsock:/v\0.sock:5", "NUL byte"),
        # serial, unix
        ("serial:", "empty path"),
        ("serial:/dev/a\0b", "NUL byte"),
        ("unix:", "empty path"),
        ("unix:@", "empty abstract socket name"),
        ("unix:/a\0b", "NUL byte"),
        # tcp
        ("tcp:", "expected tcp:HOST:PORT"),
        ("tcp:host", "expected tcp:HOST:PORT"),
        ("tcp::80", "expected tcp:HOST:PORT"),
        ("tcp:host:", "expected tcp:HOST:PORT"),
        ("tcp:[]:80", "brackets are only for IPv6"),
        ("tcp:host:http", "bad port 'http'"),
        ("tcp:host:65536", "bad port 65536"),
        ("tcp:host:-1", "bad port '-1'"),
        ("tcp:::1:80", "write IPv6 hosts in brackets"),
        ("tcp:fe80::1:80", "write IPv6 hosts in brackets"),
        ("tcp:[::1:80", "write IPv6 hosts in brackets"),
        ("tcp:[localhost]:80", "brackets are only for IPv6"),
        ("tcp:[::g]:80", "not an IPv6 address"),
        ("tcp:a b:80", "bad host 'a b'"),
        ("tcp:a/b:80", "bad host 'a/b'"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_address(text)
    # Every error names the address it could not parse.
    assert repr(text) in str(info.value) or text == ""


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown address scheme"):
        parse_address("bogus:1")


@pytest.mark.parametrize(
    "build",
    [
        lambda: VsockAddress(-1, 5),
        lambda: VsockAddress(3, U32 + 1),
        lambda: HybridVsockAddress("", 5),
        lambda: HybridVsockAddress("/v", -1),
        lambda: SerialAddress(""),
        lambda: UnixAddress("@"),
        lambda: UnixAddress("a\0"),
        lambda: TcpAddress("", 80),
        lambda: TcpAddress("h", 65536),
        lambda: TcpAddress("[::1]", 80),
        lambda: TcpAddress("::zz", 80),
    ],
)
def test_records_reject_bad_fields(build: object) -> None:
    assert callable(build)
    with pytest.raises(ConfigError):
        build()


# -- round trip ----------------------------------------------------------------------

_path_chars = st.characters(codec="utf-8", exclude_characters="\0")
paths = st.text(_path_chars, min_size=1, max_size=40)
u32 = st.integers(0, U32)
_label = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)

addresses: st.SearchStrategy[Address] = st.one_of(
    st.builds(VsockAddress, u32, u32),
    st.builds(HybridVsockAddress, paths, u32),
    st.builds(SerialAddress, paths),
    st.builds(UnixAddress, paths.filter(lambda p: p != "@")),
    st.builds(TcpAddress, hosts, st.integers(0, 0xFFFF)),
)


@given(addresses)
def test_round_trip(addr: Address) -> None:
    assert parse_address(str(addr)) == addr


@given(st.text(max_size=60))
def test_parse_arbitrary_text_gives_address_or_config_error(text: str) -> None:
    try:
        addr = parse_address(text)
    except ConfigError:
        return
    # Whatever parses prints back as something that parses to the same record.
    assert parse_address(str(addr)) == addr
