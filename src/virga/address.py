"""Addresses written as strings, parsed into typed records.

    vsock:CID:PORT            AF_VSOCK (CID may be a number or any/host/local)
    hvsock:UDS_PATH:PORT      Firecracker / Cloud Hypervisor hybrid vsock: the VMM's Unix
                              socket plus the guest port (``CONNECT <port>``); guest-initiated
                              connections arrive on ``UDS_PATH_<port>``
    serial:PATH               virtio-serial: a character device in the guest
                              (/dev/vport0p1, /dev/virtio-ports/NAME), the chardev's Unix
                              socket on the host
    unix:PATH                 Unix stream socket (``unix:@name`` for the abstract namespace)
    tcp:HOST:PORT             TCP; IPv6 hosts in brackets: ``tcp:[::1]:7000``

Parsing is strict: a bad address is a ``ConfigError`` that names the address and shows
the expected form.  Every record prints back as the string it was parsed from (numbers
normalised), so ``parse_address(str(addr)) == addr``.  The records check their fields
when built, so a record that exists always prints as a parseable address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from virga.errors import ConfigError

__all__ = [
    "VMADDR_CID_ANY",
    "VMADDR_CID_HOST",
    "VMADDR_CID_LOCAL",
    "VMADDR_PORT_ANY",
    "Address",
    "HybridVsockAddress",
    "SerialAddress",
    "TcpAddress",
    "UnixAddress",
    "VsockAddress",
    "parse_address",
]

VMADDR_CID_ANY: Final = 0xFFFFFFFF
VMADDR_CID_LOCAL: Final = 1
VMADDR_CID_HOST: Final = 2
VMADDR_PORT_ANY: Final = 0xFFFFFFFF

_U32_MAX: Final = 0xFFFFFFFF
_U16_MAX: Final = 0xFFFF

_CID_NAMES: Final = {"any": VMADDR_CID_ANY, "local": VMADDR_CID_LOCAL, "host": VMADDR_CID_HOST}

_FORMS: Final = "vsock:CID:PORT, hvsock:UDS_PATH:PORT, serial:PATH, unix:PATH or tcp:HOST:PORT"

# Characters that never appear in a host name or an IP literal; rejecting them keeps
# ``tcp:`` strings unambiguous (``[``/``]`` delimit IPv6, ``/`` and ``@`` belong to URLs).
_BAD_HOST_CHARS: Final = frozenset(" \t\r\n\0[]/@")


def _check_range(what: str, value: int, maximum: int, shown: str) -> None:
    if not 0 <= value <= maximum:
        raise ConfigError(f"bad {what} {value} in address {shown!r}: must be 0..{maximum}")


def _check_path(path: str, shown: str) -> None:
    if not path:
        raise ConfigError(f"bad address {shown!r}: empty path")
    if "\0" in path:
        raise ConfigError(f"bad address {shown!r}: NUL byte in path")


def _check_host(host: str, shown: str) -> None:
    if not host:
        raise ConfigError(f"bad address {shown!r}: empty host")
    if _BAD_HOST_CHARS.intersection(host):
        raise ConfigError(f"bad host {host!r} in address {shown!r}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError as err:
            raise ConfigError(
                f"bad host {host!r} in address {shown!r}: not an IPv6 address"
            ) from err


@dataclass(frozen=True, slots=True)
class VsockAddress:
    """AF_VSOCK context id and port (both u32)."""

    cid: int
    port: int

    def __post_init__(self) -> None:
        _check_range("CID", self.cid, _U32_MAX, f"vsock:{self.cid}:{self.port}")
        _check_range("port", self.port, _U32_MAX, f"vsock:{self.cid}:{self.port}")

    def __str__(self) -> str:
        return f"vsock:{self.cid}:{self.port}"


@dataclass(frozen=True, slots=True)
class HybridVsockAddress:
    """The VMM's hybrid-vsock Unix socket and a guest vsock port."""

    uds_path: str
    port: int

    def __post_init__(self) -> None:
        _check_path(self.uds_path, f"hvsock:{self.uds_path}:{self.port}")
        _check_range("port", self.port, _U32_MAX, f"hvsock:{self.uds_path}:{self.port}")

    @property
    def listen_path(self) -> str:
        """Where guest-initiated connections to ``port`` arrive (Firecracker's convention)."""
        return f"{self.uds_path}_{self.port}"

    def __str__(self) -> str:
        return f"hvsock:{self.uds_path}:{self.port}"


@dataclass(frozen=True, slots=True)
class SerialAddress:
    """A virtio-serial port: a character device (guest) or the chardev's Unix socket (host)."""

    path: str

    def __post_init__(self) -> None:
        _check_path(self.path, f"serial:{self.path}")

    def __str__(self) -> str:
        return f"serial:{self.path}"


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A Unix stream socket path; a leading ``@`` names the abstract namespace."""

    path: str

    def __post_init__(self) -> None:
        _check_path(self.path, f"unix:{self.path}")
        if self.path == "@":
            raise ConfigError("bad address 'unix:@': empty abstract socket name")

    @property
    def abstract(self) -> bool:
        return self.path.startswith("@")

    @property
    def socket_path(self) -> str:
        """The path as the socket API wants it (leading NUL for the abstract namespace)."""
        return "\0" + self.path[1:] if self.abstract else self.path

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A TCP host (name, IPv4 or IPv6 literal without brackets) and port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        shown = str(self)
        _check_host(self.host, shown)
        _check_range("port", self.port, _U16_MAX, shown)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


Address = VsockAddress | HybridVsockAddress | SerialAddress | UnixAddress | TcpAddress


def _number(text: str, what: str, address: str) -> int:
    # int() alone would accept " 5", "+5", "5_000" and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"bad {what} {text!r} in address {address!r}: not a number")
    return int(text, 10)


def _split_last(rest: str, address: str, form: str) -> tuple[str, str]:
    head, sep, tail = rest.rpartition(":")
    if not sep or not head or not tail:
        raise ConfigError(f"bad address {address!r}: expected {form}")
    return head, tail


def _parse_vsock(rest: str, address: str) -> VsockAddress:
    cid_text, port_text = _split_last(rest, address, "vsock:CID:PORT")
    if cid_text.lower() in _CID_NAMES:
        cid = _CID_NAMES[cid_text.lower()]
    else:
        if not (cid_text.isascii() and cid_text.isdigit()):
            raise ConfigError(
                f"bad CID {cid_text!r} in address {address!r}: "
                "expected a number or one of any, local, host"
            )
        cid = int(cid_text, 10)
    port = _number(port_text, "port", address)
    _check_range("CID", cid, _U32_MAX, address)
    _check_range("port", port, _U32_MAX, address)
    return VsockAddress(cid, port)


def _parse_tcp(rest: str, address: str) -> TcpAddress:
    host, port_text = _split_last(rest, address, "tcp:HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ConfigError(
                f"bad address {address!r}: brackets are only for IPv6 hosts, tcp:[::1]:PORT"
            )
    elif ":" in host:
        raise ConfigError(f"bad address {address!r}: write IPv6 hosts in brackets, tcp:[::1]:PORT")
    _check_host(host, address)
    port = _number(port_text, "port", address)
    _check_range("port", port, _U16_MAX, address)
    return TcpAddress(host, port)


def parse_address(address: str | Address) -> Address:
    """Parse an address string; pass an already parsed address through unchanged."""
    if not isinstance(address, str):
        return address
    scheme, sep, rest = address.partition(":")
    if not sep:
        raise ConfigError(f"bad address {address!r}: expected {_FORMS}")
    if scheme == "vsock":
        return _parse_vsock(rest, address)
    if scheme == "tcp":
        return _parse_tcp(rest, address)
    if scheme == "hvsock":
        path, port_text = _split_last(rest, address, "hvsock:UDS_PATH:PORT")
        port = _number(port_text, "port", address)
        _check_range("port", port, _U32_MAX, address)
        _check_path(path, address)
        return HybridVsockAddress(path, port)
    if scheme == "serial":
        _check_path(rest, address)
        return SerialAddress(rest)
    if scheme == "unix":
        _check_path(rest, address)
        return UnixAddress(rest)
    raise ConfigError(f"unknown address scheme {scheme!r} in {address!r}: expected {_FORMS}")
