"""The MAI launcher's data model (seed 002, section 7): app instances and their containers,
images and deployment tasks.

An :class:`Instance` is one deployment of the MaiBot stack.  ``deploy_mode`` says how it
runs: ``local`` (a cloned repository and a venv on this host), ``docker`` (a compose
stack on the local engine) or ``wsl2_docker`` (the same stack inside a WSL2 distribution,
Windows only).  The docker fields (``docker_compose_path``, ``container_ids``,
``docker_network``) are filled by a deploy; ``wsl_distro`` only for ``wsl2_docker``.

:class:`StackConfig` is what the compose file is generated from: images (so tests and
mirrors can point them elsewhere), host ports, and whether sqlite-web is included.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "NAME_RE",
    "ContainerInfo",
    "DeployMode",
    "DeploymentTask",
    "ImageInfo",
    "Instance",
    "InstanceCreate",
    "InstanceStatus",
    "InstanceUpdate",
    "LocalAdapter",
    "StackConfig",
    "TaskEvent",
    "TaskState",
    "new_id",
    "utcnow",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
"""Instance names: they become compose project, network and directory names."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class DeployMode(StrEnum):
    LOCAL = "local"
    DOCKER = "docker"
    WSL2_DOCKER = "wsl2_docker"


class InstanceStatus(StrEnum):
    CREATED = "created"
    DEPLOYING = "deploying"
    RUNNING = "running"
    STOPPED = "stopped"
    PARTIAL = "partial"  # some of its containers/processes run
    ERROR = "error"


Port = Annotated[int, Field(ge=1, le=65535)]


class StackConfig(BaseModel):
    """What the MaiBot compose stack is made of.  Defaults follow MaiBot's own
    docker-compose.yml (images, ports 18001 (WebUI), 6099 (NapCat WebUI), 8120
    (sqlite-web)); ``None`` for a port: not published."""

    model_config = ConfigDict(extra="forbid")

    core_image: str = "sengokucola/maibot:latest"
    napcat_image: str = "mlikiowa/napcat-docker:latest"
    adapter_image: str = "unclas/maimbot-adapter:latest"
    sqlite_web_image: str = "coleifer/sqlite-web:latest"
    sqlite_web: bool = False
    webui_port: Port | None = 18001
    napcat_port: Port | None = 6099
    adapter_port: Port | None = None
    sqlite_web_port: Port | None = 8120
    bind_address: str = "0.0.0.0"
    timezone: str = "Asia/Shanghai"
    napcat_uid: int = Field(default=1000, ge=0)
    napcat_gid: int = Field(default=1000, ge=0)
    eula_agree: str | None = None
    privacy_agree: str | None = None
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "always"
    environment: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the core service."""

    @field_validator("core_image", "napcat_image", "adapter_image", "sqlite_web_image")
    @classmethod
    def _image(cls, value: str) -> str:
        from cargobay.containers.reference import parse_reference

        try:
            parse_reference(value)
        except ValueError as err:
            raise ValueError(f"not an image reference: {err}") from err
        return value

    @field_validator("bind_address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # ValueError names the value
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackConfig:
        used: dict[int, str] = {}
        for field in ("webui_port", "napcat_port", "adapter_port", "sqlite_web_port"):
            port = getattr(self, field)
            if port is None or (field == "sqlite_web_port" and not self.sqlite_web):
                continue
            if port in used:
                raise ValueError(f"{field} {port} is also {used[port]}")
            used[port] = field
        return self


class NapCatSource(BaseModel):
    """Local mode: the NapCat release archive to install into ``<instance>/napcat``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="http(s) URL of the release .zip/.tar.*")
    sha256: str = Field(description="its SHA-256, 64 hexadecimal characters")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://\S+$", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.match(r"^[0-9a-f]{64}$", value):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value


class LocalAdapter(BaseModel):
    """Local mode: MaiBot-Napcat-Adapter, a second repository cloned next to the core
    (``<instance>/adapter``, its own venv ``<instance>/adapter-venv``), run as process
    ``adapter``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_url: str = Field(description="the adapter repository (http(s)/file/ssh/git URL)")
    branch: str | None = None
    command: list[str] = Field(
        default_factory=lambda: ["{python}", "main.py"],
        min_length=1,
        description="run in its checkout ({python}: its venv's)",
    )

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        if not re.match(r"^(https?|file|ssh|git)://\S+$", value):
            raise ValueError(f"repo_url {value!r} is not an http(s)/file/ssh/git URL")
        return value


class _InstanceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(default="latest", min_length=1, max_length=64)
    description: str = Field(default="", max_length=500)
    repo_url: str | None = Field(default=None, description="local mode: the app repository")
    branch: str | None = None
    stack: StackConfig = Field(default_factory=StackConfig)
    ports: dict[str, int] = Field(default_factory=dict)
    paths: dict[str, str] = Field(default_factory=dict)
    local_commands: dict[str, list[str]] = Field(
        default_factory=lambda: {"core": ["{python}", "bot.py"]},
        description="local mode: the processes to run in the checkout ({python}: the venv's)",
    )
    napcat: NapCatSource | None = Field(
        default=None, description="local mode: a NapCat release to install on deploy"
    )
    napcat_command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="local mode: how NapCat is started, in <instance>/napcat (process "
        "napcat; none: NapCat is not run)",
    )
    adapter: LocalAdapter | None = Field(
        default=None, description="local mode: MaiBot-Napcat-Adapter to clone and run"
    )


class InstanceCreate(_InstanceFields):
    """The body of a create request."""

    name: str
    deploy_mode: DeployMode = DeployMode.DOCKER
    wsl_distro: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                "must be 1-48 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> InstanceCreate:
        if self.deploy_mode == DeployMode.WSL2_DOCKER and not self.wsl_distro:
            raise ValueError("wsl_distro is required for deploy_mode wsl2_docker")
        if self.deploy_mode != DeployMode.WSL2_DOCKER and self.wsl_distro:
            raise ValueError("wsl_distro is only for deploy_mode wsl2_docker")
        if self.napcat is not None and self.deploy_mode != DeployMode.LOCAL:
            raise ValueError(
                "napcat is only for deploy_mode local (docker uses stack.napcat_image)"
            )
        local_only = {"napcat_command": self.napcat_command, "adapter": self.adapter}
        for field, value in local_only.items():
            if value is not None and self.deploy_mode != DeployMode.LOCAL:
                raise ValueError(f"{field} is only for deploy_mode local")
        if self.napcat_command is not None and self.napcat is None:
            raise ValueError("napcat_command needs napcat (the release to install)")
        clash = {"adapter", "napcat"} & set(self.local_commands)
        if clash:
            raise ValueError(f"local_commands must not name {sorted(clash)}: reserved")
        if self.repo_url is not None and not re.match(
            r"^(https?|file|ssh|git)://\S+$", self.repo_url
        ):
            raise ValueError(f"repo_url {self.repo_url!r} is not an http(s)/file/ssh/git URL")
        return self


class InstanceUpdate(BaseModel):
    """A partial update: only the given fields change."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=500)
    stack: StackConfig | None = None
    branch: str | None = None
    napcat: NapCatSource | None = Field(
        default=None, description="local mode: a NapCat release to install at the next deploy"
    )


class Instance(_InstanceFields):
    id: str = Field(default_factory=new_id)
    name: str
    deploy_mode: DeployMode
    docker_compose_path: str | None = None
    container_ids: list[str] = Field(default_factory=list)
    docker_network: str | None = None
    wsl_distro: str | None = None
    status: InstanceStatus = InstanceStatus.CREATED
    status_message: str | None = Field(
        default=None,
        description="why the status is error, or what the last failed deploy said "
        "(cleared when a deploy starts)",
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    legacy: dict[str, Any] = Field(
        default_factory=dict, description="fields imported from an older launcher database"
    )


class ContainerInfo(BaseModel):
    container_id: str
    instance_id: str
    name: str
    service: str
    image: str
    status: str
    state: str
    ports: list[str] = Field(default_factory=list)
    created_at: datetime | None = None


class ImageInfo(BaseModel):
    image_id: str | None
    repository: str
    tag: str
    size: int | None = None
    pulled_at: datetime | None = None
    present: bool = True


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TaskEvent(BaseModel):
    """One line of a task's followable progress.  ``type``: ``step`` (a new step begins),
    ``progress`` (percent), ``log`` (a line), ``done`` / ``error`` (the final state)."""

    type: Literal["step", "progress", "log", "done", "error"]
    task_id: str
    seq: int
    step: str | None = None
    percent: float | None = None
    message: str = ""
    time: datetime = Field(default_factory=utcnow)


class DeploymentTask(BaseModel):
    id: str = Field(default_factory=new_id)
    instance_id: str
    instance_name: str
    kind: str = "deploy"
    state: TaskState = TaskState.PENDING
    steps: list[str] = Field(default_factory=list)
    step: str | None = None
    percent: float = 0.0
    log: list[str] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
