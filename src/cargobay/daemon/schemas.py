"""Request and response bodies of the daemon API v1 (see docs/openapi.json).

Request models forbid unknown fields, so a misspelt option is a 400 naming it rather
than a silently ignored setting.  Sizes, ports and names are checked by the machines
service (one place for those rules); these models only check JSON types.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cargobay.machines.models import VMInstance

__all__ = [
    "API_VERSION",
    "BuildImageRequest",
    "CreateMachineRequest",
    "ErrorBody",
    "ErrorDetail",
    "ExecRequestBody",
    "Info",
    "Machine",
    "StartRequest",
    "StopRequest",
]

API_VERSION = 1


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpiceProbeRequest(_Request):
    host: str = Field(min_length=1, description="Spice server address (a VM's -spice addr).")
    port: int = Field(ge=1, le=65535, description="Its port, or its tls-port with tls=true.")
    password: str | None = Field(default=None, description="The Spice ticket (password).")
    tls: bool = False
    ca_file: str | None = Field(default=None, description="CA certificate file for tls=true.")
    timeout: float = Field(default=10.0, gt=0, le=120)


class CreateMachineRequest(_Request):
    name: str = Field(description="Machine name: 1-63 of a-z 0-9 - _ . starting alphanumeric.")
    # Left out: the template's value, else config.yaml's defaults (cargobay.config).
    image: str | None = Field(default=None, description="Image to boot (default: default).")
    cpus: int | None = Field(default=None, description="vCPUs (default: config.yaml).")
    memory: str | int | None = Field(
        default=None, description="512MB, 1GB, 1.5GiB or MiB as a number (default: config.yaml)."
    )
    disk: str | int | None = Field(
        default=None, description="Size of the machine's data disk (default: config.yaml)."
    )
    ports: list[str] | None = Field(default=None, description="HOST:GUEST[/udp] mappings.")
    env: dict[str, str] | None = Field(default=None, description="Environment of the sandbox.")
    template: str | None = Field(
        default=None, description="A resource profile or shipped template (aiva templates)."
    )
    shares: list[str] | None = Field(
        default=None, description="Host folders shared into the guest: HOST:GUEST[:ro]."
    )
    cache_strategy: str | None = Field(
        default=None,
        description="Data disk cache: writeback, writethrough, none, directsync, unsafe "
        "(default: config.yaml).",
    )
    network: str | None = Field(
        default=None,
        description="user (default: QEMU user-mode NIC for --ports), bridge (a TAP on "
        "config.yaml's bridge, needs a root daemon) or none.",
    )
    restart: str | None = Field(
        default=None,
        description="After the VM process ends on its own: no (default), on-failure[:N], always.",
    )
    start: bool = True
    boot_timeout: float = Field(default=120.0, description="Seconds to wait for the guest agent.")


class StartRequest(_Request):
    boot_timeout: float = 120.0
    snapshot: str | None = Field(
        default=None, description="Warm-start from this snapshot instead of booting."
    )


class StopRequest(_Request):
    force: bool = False
    timeout: float = Field(default=10.0, description="Seconds of graceful stop before killing.")


class ExecRequestBody(_Request):
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    stdin_b64: str | None = Field(default=None, description="All of stdin, base64-encoded.")
    tty: bool = False
    timeout: float | None = Field(default=None, gt=0)


class BuildImageRequest(_Request):
    name: str = "default"
    force: bool = False
    kernel: Literal["debian", "minimal"] | None = Field(
        default=None,
        description="The guest kernel: Debian's packaged kernel or the minimal one built "
        "from linux-source-6.1 (default: what the image's recipe says).",
    )


class Machine(VMInstance):
    """A machine as stored, plus whether the daemon holds a live guest agent connection."""

    agent_ready: bool = False


class Info(BaseModel):
    version: str
    api_version: int = API_VERSION
    pid: int
    uptime: float
    accel: Literal["kvm", "tcg"] | None
    backends: list[str]
    paths: dict[str, str]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid input"},
    404: {"model": ErrorBody, "description": "Unknown machine or image"},
    409: {"model": ErrorBody, "description": "Conflict with the current state"},
    500: {"model": ErrorBody, "description": "Daemon-side failure"},
}
