"""The Firecracker backend: a microVM per machine, driven through Firecracker's REST API
on a Unix socket (``firecracker_api`` builds the requests; this module sends them).

Offered only where it can run (``availability``): the ``firecracker`` binary must be
installed (``CARGOBAY_FIRECRACKER`` or ``PATH``; it is not packaged by Debian 12: take a
release from github.com/firecracker-microvm/firecracker/releases), ``/dev/kvm`` must open,
and the QEMU backend's KVM probe must have booted a guest under KVM on this host kernel:
Firecracker has no emulation to fall back to.  On the development and CI machines of this
project KVM exists but cannot boot a guest, so the backend says so and is not registered;
``GET /v1/hypervisors`` shows why.

A VM: ``firecracker --api-sock RUN/fc.sock --id ID`` (or under ``jailer``, see
``jailer_argv``: its own uid/gid, a chroot under ``--chroot-base-dir``, a cgroup), then the
boot requests, ``InstanceStart``.  Stop: ``SendCtrlAltDel`` (the guest's keyboard reset
path, which our init turns into a power-off), then SIGKILL after the timeout.  The agent
channel is hybrid vsock on ``RUN/vsock.sock`` port ``AGENT_VSOCK_PORT``.

Not done yet: the guest agent listens on virtio-serial only; a Firecracker guest needs it
on vsock too (a guest-image change, made when Firecracker can run in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from cargobay.errors import HypervisorError
from cargobay.hypervisors import accel
from cargobay.hypervisors.base import Features, VMHandle, VMSpec, VMStatus
from cargobay.hypervisors.firecracker_api import (
    AGENT_VSOCK_PORT,
    ApiRequest,
    action,
    boot_requests,
    describe,
    parse_fault,
    vm_state,
)

__all__ = [
    "Availability",
    "FirecrackerApi",
    "FirecrackerHypervisor",
    "JailerSettings",
    "availability",
    "jailer_argv",
]

BINARY_ENV = "CARGOBAY_FIRECRACKER"
API_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Availability:
    ok: bool
    reason: str
    binary: str | None = None


def availability(
    cache_dir: Path, env: Mapping[str, str] | None = None, kvm_device: Path = accel.KVM_DEVICE
) -> Availability:
    env = os.environ if env is None else env
    binary = env.get(BINARY_ENV) or shutil.which("firecracker")
    if not binary or not os.access(binary, os.X_OK):
        return Availability(
            False,
            "no firecracker binary: Debian does not package it; install a release from "
            "github.com/firecracker-microvm/firecracker/releases and put it on PATH "
            f"(or set {BINARY_ENV})",
        )
    opens, why = accel.kvm_device_status(kvm_device)
    if not opens:
        return Availability(False, f"Firecracker needs KVM: {why}", binary)
    if not accel.cached_kvm_works(cache_dir):
        return Availability(
            False,
            "Firecracker needs a KVM that boots guests, and no guest has booted under KVM "
            "on this host kernel (the QEMU backend's probe falls back to TCG here; "
            "Firecracker has no emulation)",
            binary,
        )
    return Availability(True, "firecracker and a working KVM", binary)


@dataclass(frozen=True, slots=True)
class JailerSettings:
    """Seed 004's jailer: the VMM as its own user, in a chroot, in a cgroup."""

    uid: int
    gid: int
    chroot_base: Path = Path("/srv/jailer")
    cgroup_version: int = 2
    jailer: str = "jailer"


def jailer_argv(settings: JailerSettings, firecracker: str, vm_id: str, spec: VMSpec) -> list[str]:
    """``jailer ... -- firecracker args``: the VMM confined; its API socket is inside the
    chroot (``<chroot_base>/firecracker/<id>/root/run/fc.sock``)."""
    quota = spec.cpus * 100_000
    memory = (spec.memory_mb + 128) * 1024 * 1024
    return [
        settings.jailer,
        "--id", vm_id,
        "--exec-file", firecracker,
        "--uid", str(settings.uid),
        "--gid", str(settings.gid),
        "--chroot-base-dir", str(settings.chroot_base),
        "--cgroup-version", str(settings.cgroup_version),
        "--cgroup", f"cpu.max={quota} 100000",
        "--cgroup", f"memory.max={memory}",
        "--new-pid-ns",
        "--",
        "--api-sock", "/run/fc.sock",
    ]  # fmt: skip


class FirecrackerApi:
    """The VMM's REST API over its Unix socket (httpx's UDS transport)."""

    def __init__(self, socket: str, timeout: float = API_TIMEOUT) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=socket),
            base_url="http://localhost",
            timeout=timeout,
        )

    async def send(self, request: ApiRequest) -> object:
        try:
            reply = await self._client.request(
                request.method,
                request.path,
                content=request.content(),
                headers={"Content-Type": "application/json"} if request.body is not None else {},
            )
        except httpx.HTTPError as err:
            raise HypervisorError(
                f"Firecracker API {request.method} {request.path} failed: {err}"
            ) from err
        if reply.status_code >= 300:
            raise parse_fault(reply.status_code, reply.content, request)
        return reply.json() if reply.content else None

    async def close(self) -> None:
        await self._client.aclose()


class FirecrackerHypervisor:
    name = "firecracker"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @property
    def features(self) -> Features:
        return Features(
            pause=True, graceful_stop=True, adopt=True, console_log=True, vsock=True, kvm=True
        )

    def console_log(self, handle: VMHandle) -> Path:
        return Path(handle.console_log)

    async def start(self, spec: VMSpec) -> VMHandle:
        spec.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        api_sock = spec.run_dir / "fc.sock"
        console = spec.state_dir / "console.log"
        api_sock.unlink(missing_ok=True)
        with console.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                self.binary, "--api-sock", str(api_sock), "--id", spec.vm_id[:60],
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        handle = VMHandle(
            vm_id=spec.vm_id,
            backend=self.name,
            pid=proc.pid,
            control_socket=str(api_sock),
            agent_address=f"hvsock:{spec.run_dir / 'vsock.sock'}:{AGENT_VSOCK_PORT}",
            console_log=str(console),
            accel="kvm",
        )
        api = FirecrackerApi(str(api_sock))
        try:
            await _wait_socket(api_sock, proc)
            for request in boot_requests(
                spec,
                vsock_uds=str(spec.run_dir / "vsock.sock"),
                log_path=str(spec.state_dir / "firecracker.log"),
            ):
                await api.send(request)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        finally:
            await api.close()
        return handle

    async def _call(self, handle: VMHandle, request: ApiRequest) -> object:
        api = FirecrackerApi(handle.control_socket)
        try:
            return await api.send(request)
        finally:
            await api.close()

    async def stop(self, handle: VMHandle, timeout: float = 10.0) -> None:
        with contextlib.suppress(HypervisorError):
            await self._call(handle, action("SendCtrlAltDel"))
        for _ in range(int(max(timeout, 0) * 10)):
            if not _alive(handle.pid):
                return
            await asyncio.sleep(0.1)
        await self.kill(handle)

    async def kill(self, handle: VMHandle) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGKILL)

    async def pause(self, handle: VMHandle) -> None:
        await self._call(handle, vm_state("Paused"))

    async def resume(self, handle: VMHandle) -> None:
        await self._call(handle, vm_state("Resumed"))

    async def status(self, handle: VMHandle) -> VMStatus:
        if not _alive(handle.pid):
            return VMStatus.STOPPED
        try:
            info = await self._call(handle, describe())
        except HypervisorError:
            return VMStatus.UNKNOWN
        state = info.get("state") if isinstance(info, dict) else None
        return {"Running": VMStatus.RUNNING, "Paused": VMStatus.PAUSED}.get(
            str(state), VMStatus.UNKNOWN
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _wait_socket(path: Path, proc: asyncio.subprocess.Process, timeout: float = 5.0) -> None:
    for _ in range(int(timeout * 100)):
        if path.exists():  # noqa: ASYNC240 - one stat per poll
            return
        if proc.returncode is not None:
            raise HypervisorError(f"firecracker exited at once (status {proc.returncode})")
        await asyncio.sleep(0.01)
    raise HypervisorError(f"firecracker did not create its API socket {path} in {timeout} s")
