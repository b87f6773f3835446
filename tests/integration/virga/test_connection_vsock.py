"""AF_VSOCK: what can be checked on a machine without a vsock peer.

There is no vsock loopback here (FIELD-NOTES): a connect to CID 1 hangs until a
timeout, so no test needs a working peer.  These check that a connect always ends
quickly with a typed error, that listen either works or fails clearly, and the
translation of kernel errors into advice.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time

import pytest

from tests.support import require
from virga.address import VMADDR_CID_ANY, VMADDR_CID_LOCAL, VsockAddress
from virga.connection import Listener, connect, listen
from virga.connection.vsock import connect_error, local_cid, vsock_socket
from virga.errors import ConnectError, VirgaTimeoutError


def _kernel_has_vsock() -> bool:
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except (AttributeError, OSError):
        return False
    return True


async def test_connect_to_local_cid_ends_quickly_with_typed_error() -> None:
    started = time.monotonic()
    with pytest.raises((VirgaTimeoutError, ConnectError)) as info:
        await connect(f"vsock:{VMADDR_CID_LOCAL}:5999", timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"connect took {elapsed:.2f}s despite a 0.5s timeout"
    assert "vsock:1:5999" in str(info.value)


async def test_connect_unreachable_cid_ends_quickly() -> None:
    # A CID no VM has: a timeout, ENODEV or reset, depending on the transports loaded.
    started = time.monotonic()
    with pytest.raises((VirgaTimeoutError, ConnectError)):
        await connect("vsock:123456:5999", timeout=0.5)
    assert time.monotonic() - started < 3


async def test_connect_error_types() -> None:
    if not _kernel_has_vsock():
        with pytest.raises(ConnectError, match="AF_VSOCK"):
            await connect("vsock:1:5999", timeout=0.2)
        return
    with pytest.raises((VirgaTimeoutError, ConnectError)) as info:
        await connect("vsock:1:5999", timeout=0.2)
    # A timeout (no vsock_loopback: the connect hangs) or a refusal (vsock_loopback loaded).
    assert "vsock:1:5999" in str(info.value)
    if isinstance(info.value, VirgaTimeoutError):
        assert isinstance(info.value, TimeoutError)
        assert "timed out after 0.2s" in str(info.value)


async def _try_listen(address: str) -> Listener | ConnectError:
    try:
        return await listen(address)
    except ConnectError as err:
        return err


async def test_listen_works_or_fails_clearly() -> None:
    result = await _try_listen(f"vsock:any:{_free_port_guess()}")
    if isinstance(result, ConnectError):
        assert "cannot" in str(result)
        assert "vsock:" in str(result)
        return
    async with result as listener:
        assert listener.description.startswith("vsock:4294967295:")
        # A second listener on the same port is refused with a clear message.
        with pytest.raises(ConnectError, match="already in use"):
            await listen(listener.description)
        # No peer can reach us here, so accept just waits.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(listener.accept(), 0.1)


async def test_listen_on_any_port_describes_the_real_port() -> None:
    require(_kernel_has_vsock(), "AF_VSOCK support in the host kernel (modprobe vsock)")
    async with await listen(f"vsock:any:{0xFFFFFFFF}") as listener:
        port = int(listener.description.rsplit(":", 1)[1])
        assert port != 0xFFFFFFFF


def _free_port_guess() -> int:
    """A vsock port nobody on this machine is likely to use (vsock has no port 0 trick)."""
    return 40000 + (time.monotonic_ns() % 20000)


def test_vsock_socket_is_non_blocking_or_clear_error() -> None:
    if not _kernel_has_vsock():
        with pytest.raises(ConnectError, match="AF_VSOCK"):
            vsock_socket("vsock:3:1")
        return
    with vsock_socket("vsock:3:1") as sock:
        assert sock.getblocking() is False


def test_local_cid_is_a_cid_or_none() -> None:
    cid = local_cid()
    assert cid is None or 2 < cid < VMADDR_CID_ANY


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ECONNREFUSED, "is the server running"),
        (errno.ECONNRESET, "nothing listens on port 7"),
        (errno.ENODEV, "CID 9"),
        (errno.EHOSTUNREACH, "is the VM running"),
        (errno.EAFNOSUPPORT, "not supported by this kernel"),
        (errno.EACCES, "ermission denied"),
    ],
)
def test_kernel_errors_become_advice(code: int, advice: str) -> None:
    err = connect_error(VsockAddress(9, 7), OSError(code, os.strerror(code)))
    assert isinstance(err, ConnectError)
    assert "cannot connect to vsock:9:7" in str(err)
    assert advice in str(err)
    assert err.address == "vsock:9:7"
