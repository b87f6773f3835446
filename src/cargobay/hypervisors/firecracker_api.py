"""Firecracker's REST API as data: one builder per endpoint CargoBay uses (sans-IO).

Each builder returns an ``ApiRequest`` (method, path, JSON body) that the thin client in
``hypervisors.firecracker`` sends over the VMM's Unix socket; ``parse_fault`` turns an
error reply (``{"fault_message": ...}``) into a ``HypervisorError``.  ``boot_requests``
is the whole pre-boot configuration of a ``VMSpec`` in the order Firecracker accepts it,
ending with ``InstanceStart``.  The bodies follow Firecracker's published swagger
(``swagger/firecracker.yaml``); the tests validate every one against it.

The boot contract is the QEMU backend's (``qemu_cmdline``): the image's kernel and
initramfs, the read-only root image and the per-VM data disk (neither is the root
device: the initramfs builds the overlay root from the two), the serial console, and the
guest agent, reached here over vsock (Firecracker has no virtio-serial): the host connects
to ``uds_path`` and asks for ``AGENT_VSOCK_PORT`` (hybrid vsock, ``virga``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from cargobay.errors import HypervisorError
from cargobay.hypervisors.base import VMSpec
from cargobay.hypervisors.qemu_cmdline import kernel_cmdline

__all__ = [
    "AGENT_VSOCK_PORT",
    "ApiRequest",
    "action",
    "boot_requests",
    "boot_source",
    "drive",
    "logger",
    "machine_config",
    "metrics",
    "network_interface",
    "parse_fault",
    "snapshot_create",
    "snapshot_load",
    "vm_state",
    "vsock",
]

AGENT_VSOCK_PORT = 1024
GUEST_CID = 3
CONSOLE_PARAMS = ("console=ttyS0", "reboot=k", "panic=-1", "pci=off")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: Literal["GET", "PUT", "PATCH"]
    path: str
    body: dict[str, Any] | None = None

    def content(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body).encode()


def machine_config(vcpus: int, memory_mb: int, *, track_dirty_pages: bool = False) -> ApiRequest:
    return ApiRequest(
        "PUT",
        "/machine-config",
        {
            "vcpu_count": vcpus,
            "mem_size_mib": memory_mb,
            "smt": False,
            "track_dirty_pages": track_dirty_pages,
        },
    )


def boot_source(kernel: str, boot_args: str, initrd: str | None = None) -> ApiRequest:
    body: dict[str, Any] = {"kernel_image_path": kernel, "boot_args": boot_args}
    if initrd is not None:
        body["initrd_path"] = initrd
    return ApiRequest("PUT", "/boot-source", body)


def drive(drive_id: str, path: str, *, read_only: bool, cache: str = "Unsafe") -> ApiRequest:
    return ApiRequest(
        "PUT",
        f"/drives/{drive_id}",
        {
            "drive_id": drive_id,
            "path_on_host": path,
            "is_root_device": False,
            "is_read_only": read_only,
            "cache_type": cache,
        },
    )


def network_interface(iface_id: str, tap: str, mac: str | None = None) -> ApiRequest:
    body: dict[str, Any] = {"iface_id": iface_id, "host_dev_name": tap}
    if mac is not None:
        body["guest_mac"] = mac
    return ApiRequest("PUT", f"/network-interfaces/{iface_id}", body)


def vsock(uds_path: str, guest_cid: int = GUEST_CID) -> ApiRequest:
    return ApiRequest("PUT", "/vsock", {"guest_cid": guest_cid, "uds_path": uds_path})


def logger(path: str, level: str = "Warning") -> ApiRequest:
    return ApiRequest("PUT", "/logger", {"log_path": path, "level": level, "show_level": True})


def metrics(path: str) -> ApiRequest:
    return ApiRequest("PUT", "/metrics", {"metrics_path": path})


def action(kind: Literal["InstanceStart", "SendCtrlAltDel", "FlushMetrics"]) -> ApiRequest:
    return ApiRequest("PUT", "/actions", {"action_type": kind})


def vm_state(state: Literal["Paused", "Resumed"]) -> ApiRequest:
    return ApiRequest("PATCH", "/vm", {"state": state})


def snapshot_create(state_path: str, memory_path: str, *, diff: bool = False) -> ApiRequest:
    return ApiRequest(
        "PUT",
        "/snapshot/create",
        {
            "snapshot_path": state_path,
            "mem_file_path": memory_path,
            "snapshot_type": "Diff" if diff else "Full",
        },
    )


def snapshot_load(state_path: str, memory_path: str, *, resume: bool = True) -> ApiRequest:
    return ApiRequest(
        "PUT",
        "/snapshot/load",
        {
            "snapshot_path": state_path,
            "mem_backend": {"backend_type": "File", "backend_path": memory_path},
            "resume_vm": resume,
        },
    )


def describe() -> ApiRequest:
    return ApiRequest("GET", "/")


def boot_requests(
    spec: VMSpec, *, vsock_uds: str, log_path: str, tap: str | None = None
) -> list[ApiRequest]:
    """Everything Firecracker needs before ``InstanceStart``, then ``InstanceStart``."""
    params = [p for p in CONSOLE_PARAMS if p.split("=")[0] not in spec.cmdline]
    requests = [
        logger(log_path),
        machine_config(spec.cpus, spec.memory_mb),
        boot_source(
            str(spec.kernel),
            kernel_cmdline(spec, params),
            None if spec.initrd is None else str(spec.initrd),
        ),
        drive("root", str(spec.rootfs), read_only=True),
        drive("data", str(spec.data_disk), read_only=False),
        vsock(vsock_uds),
    ]
    if tap is not None:
        requests.append(network_interface("eth0", tap))
    requests.append(action("InstanceStart"))
    return requests


def parse_fault(status: int, content: bytes, request: ApiRequest) -> HypervisorError:
    """The error for a non-2xx reply, with Firecracker's own message."""
    try:
        message = json.loads(content).get("fault_message") or content.decode(errors="replace")
    except (ValueError, AttributeError):
        message = content.decode(errors="replace") or "no message"
    return HypervisorError(
        f"Firecracker refused {request.method} {request.path} (HTTP {status}): {message}"
    )
