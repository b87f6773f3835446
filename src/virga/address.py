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
the expected form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from virga.errors import ConfigError

__all__ = [
    "VMADDR_CID_ANY",
    "VMADDR_CID_HOST",
    "VMADDR_CID_LOCAL",
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

_CID_NAMES: Final = {"any": VMADDR_CID_ANY, "local": VMADDR_CID_LOCAL, "host": VMADDR_CID_HOST}

_FORMS: Final = (
    "vsock:CID:PORT, hvsock:UDS_PATH:PORT, serial:PATH, unix:PATH or tcp:HOST:PORT"
)


@dataclass(frozen=True, slots=True)
class VsockAddress:
    cid: int
    port: int

    def __str__(self) -> str:
        return f"vsock:{self.cid}:{self.port}"


@dataclass(frozen=True, slots=True)
class HybridVsockAddress:
    uds_path: str
    port: int

    @property
    def listen_path(self) -> str:
        """Where guest-initiated connections to ``port`` arrive (Firecracker's convention)."""
        return f"{self.uds_path}_{self.port}"

    def __str__(self) -> str:
        return f"hvsock:{self.uds_path}:{self.port}"


@dataclass(frozen=True, slots=True)
class SerialAddress:
    path: str

    def __str__(self) -> str:
        return f"serial:{self.path}"


@dataclass(frozen=True, slots=True)
class UnixAddress:
    path: str

    @property
    def socket_path(self) -> str:
        """The path as the socket API wants it (leading NUL for the abstract namespace)."""
        return "\0" + self.path[1:] if self.path.startswith("@") else self.path

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


Address = VsockAddress | HybridVsockAddress | SerialAddress | UnixAddress | TcpAddress


def _port(text: str, address: str, *, bits: int) -> int:
    try:
        port = int(text, 10)
    except ValueError as err:
        raise ConfigError(f"bad port {text!r} in address {address!r}: not a number") from err
    if not 0 <= port < (1 << bits):
        raise ConfigError(f"bad port {port} in address {address!r}: out of range")
    return port


def _split_last(rest: str, address: str, form: str) -> tuple[str, str]:
    head, sep, tail = rest.rpartition(":")
    if not sep or not head or not tail:
        raise ConfigError(f"bad address {address!r}: expected {form}")
    return head, tail


def parse_address(address: str | Address) -> Address:
    """Parse an address string; pass an already parsed address through unchanged."""
    if not isinstance(address, str):
        return address
    scheme, sep, rest = address.partition(":")
    if not sep or not rest:
        raise ConfigError(f"bad address {address!r}: expected {_FORMS}")
    if scheme == "vsock":
        cid_text, port_text = _split_last(rest, address, "vsock:CID:PORT")
        if cid_text.lower() in _CID_NAMES:
            cid = _CID_NAMES[cid_text.lower()]
        else:
            try:
                cid = int(cid_text, 10)
            except ValueError as err:
                raise ConfigError(
                    f"bad CID {cid_text!r} in address {address!r}: "
                    "expected a number or one of any, local, host"
                ) from err
            if not 0 <= cid <= 0xFFFFFFFF:
                raise ConfigError(f"bad CID {cid} in address {address!r}: out of range")
        return VsockAddress(cid, _port(port_text, address, bits=32))
    if scheme == "hvsock":
        path, port_text = _split_last(rest, address, "hvsock:UDS_PATH:PORT")
        return HybridVsockAddress(path, _port(port_text, address, bits=32))
    if scheme == "serial":
        return SerialAddress(rest)
    if scheme == "unix":
        return UnixAddress(rest)
    if scheme == "tcp":
        host, port_text = _split_last(rest, address, "tcp:HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ConfigError(
                f"bad address {address!r}: write IPv6 hosts in brackets, tcp:[::1]:PORT"
            )
        if not host:
            raise ConfigError(f"bad address {address!r}: empty host")
        return TcpAddress(host, _port(port_text, address, bits=16))
    raise ConfigError(f"unknown address scheme {scheme!r} in {address!r}: expected {_FORMS}")
