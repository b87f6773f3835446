"""The Compose Specification as pydantic models, in one normal form.

Every key a user may write in two ways (``environment`` as a list or a mapping, ``ports``
and ``volumes`` in short or long syntax, ``depends_on`` as a list or a mapping, ...) is
turned into its long form by a ``before`` validator, so the rest of the engine (planner,
exporters, ``config``) reads one shape.  Unknown keys are errors, except ``x-*``
extensions, which are kept on the top level and dropped inside services.

What the models do not check here, because it needs the whole merged project (several
``-f`` files), is in ``loader.validate_project``: missing images, undefined networks,
volumes and dependencies, dependency cycles.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from cargobay.containers.compose.values import parse_bytes, parse_duration, parse_port, parse_volume

__all__ = [
    "BuildConfig",
    "ComposeProject",
    "DependsOn",
    "Deploy",
    "Healthcheck",
    "NetworkConfig",
    "PortConfig",
    "SecretConfig",
    "Service",
    "ServiceConfigRef",
    "ServiceNetwork",
    "ServiceSecret",
    "VolumeConfig",
    "VolumeMount",
]


def _drop_extensions(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, data: Any) -> Any:
        return _drop_extensions(data)


def _str_map(value: Any, *, what: str, sep: str = "=") -> Any:
    """A ``KEY=VALUE`` list or a mapping, as a mapping of strings (None kept for a bare
    key, meaning "from the environment")."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, str | None] = {}
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"{what} entries must be strings like KEY{sep}VALUE")
            key, found, rest = item.partition(sep)
            if not key or any(ch.isspace() for ch in key):
                raise ValueError(f"{item!r}: a {what} name may not be empty or hold spaces")
            out[key] = rest if found else None
        return out
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                raise ValueError(f"{what} {key!r} must be a string, number or boolean")
            if isinstance(item, bool):
                out[str(key)] = "true" if item else "false"
            else:
                out[str(key)] = None if item is None else str(item)
        return out
    raise ValueError(f"{what} must be a list of KEY{sep}VALUE or a mapping")


def _labels(value: Any) -> Any:
    out = _str_map(value, what="label")
    return {k: "" if v is None else v for k, v in out.items()}


def _list_of_str(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
StrMap = Annotated[dict[str, str | None], BeforeValidator(lambda v: _str_map(v, what="variable"))]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]
StrList = Annotated[list[str], BeforeValidator(_list_of_str)]
Command = str | list[str]


class BuildConfig(_Strict):
    context: str = "."
    dockerfile: str | None = None
    args: StrMap = Field(default_factory=dict)
    target: str | None = None
    labels: Labels = Field(default_factory=dict)
    cache_from: list[str] = Field(default_factory=list)
    network: str | None = None
    shm_size: ByteSize | None = None
    extra_hosts: list[str] = Field(default_factory=list)
    pull: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        return {"context": data} if isinstance(data, str) else data


class PortConfig(_Strict):
    target: int = Field(ge=1, le=65535)
    published: str | None = None
    host_ip: str | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"
    name: str | None = None
    app_protocol: str | None = None


def _ports(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError("ports must be a list")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        try:
            out.extend(parse_port(item))
        except ValueError as err:
            raise ValueError(f"[{index}] {err}") from None
    return out


class BindOptions(_Strict):
    propagation: str | None = None
    create_host_path: bool = True
    selinux: Literal["z", "Z"] | None = None


class VolumeOptions(_Strict):
    nocopy: bool = False
    subpath: str | None = None


class TmpfsOptions(_Strict):
    size: ByteSize | None = None
    mode: int | None = None


class VolumeMount(_Strict):
    type: Literal["bind", "volume", "tmpfs"]
    source: str | None = None
    target: str
    read_only: bool = False
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None


def _volumes(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError("volumes must be a list")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        try:
            out.append(parse_volume(item))
        except ValueError as err:
            raise ValueError(f"[{index}] {err}") from None
    return out


class ServiceNetwork(_Strict):
    aliases: list[str] = Field(default_factory=list)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    priority: int = 0
    mac_address: str | None = None


def _service_networks(value: Any) -> Any:
    if isinstance(value, list):
        return {name: {} for name in value}
    if isinstance(value, dict):
        return {name: ({} if cfg is None else cfg) for name, cfg in value.items()}
    raise ValueError("networks must be a list of names or a mapping")


class DependsOn(_Strict):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    restart: bool = False
    required: bool = True


def _depends_on(value: Any) -> Any:
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ValueError("depends_on entries must be service names")
        return {name: {} for name in value}
    if isinstance(value, dict):
        return {name: ({} if cfg is None else cfg) for name, cfg in value.items()}
    raise ValueError("depends_on must be a list of services or a mapping")


class Healthcheck(_Strict):
    test: list[str] | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    start_period: Duration | None = None
    start_interval: Duration | None = None
    retries: int | None = Field(default=None, ge=0)
    disable: bool = False

    @field_validator("test", mode="before")
    @classmethod
    def _test(cls, value: Any) -> Any:
        if isinstance(value, str):
            return ["CMD-SHELL", value]
        if isinstance(value, list) and value and value[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError("a test list starts with CMD, CMD-SHELL or NONE")
        return value


class ResourceLimits(_Strict):
    cpus: float | None = Field(default=None, gt=0)
    memory: ByteSize | None = None
    pids: int | None = None

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: Any) -> Any:
        return float(value) if isinstance(value, str) else value


class Resources(_Strict):
    limits: ResourceLimits | None = None
    reservations: ResourceLimits | None = None


class RestartPolicy(_Strict):
    condition: Literal["none", "on-failure", "any"] = "any"
    delay: Duration | None = None
    max_attempts: int | None = None
    window: Duration | None = None


class Placement(_Strict):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[dict[str, str]] = Field(default_factory=list)
    max_replicas_per_node: int | None = None


class UpdateConfig(_Strict):
    parallelism: int | None = None
    delay: Duration | None = None
    failure_action: str | None = None
    monitor: Duration | None = None
    max_failure_ratio: float | None = None
    order: Literal["stop-first", "start-first"] | None = None


class Deploy(_Strict):
    mode: Literal["replicated", "global"] = "replicated"
    replicas: int | None = Field(default=None, ge=0)
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    labels: Labels = Field(default_factory=dict)
    placement: Placement | None = None
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    endpoint_mode: Literal["vip", "dnsrr"] | None = None


class Logging(_Strict):
    driver: str | None = None
    options: dict[str, str] = Field(default_factory=dict)


class ServiceSecret(_Strict):
    """A secret a service mounts, at ``/run/secrets/<target or source>``."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        return {"source": data} if isinstance(data, str) else data

    @property
    def path(self) -> str:
        if self.target is None:
            return f"/run/secrets/{self.source}"
        if self.target.startswith("/"):
            return self.target
        return f"/run/secrets/{self.target}"


class ServiceConfigRef(ServiceSecret):
    """A config a service mounts, at ``/<source>`` or its ``target``."""

    @property
    def path(self) -> str:
        if self.target is None:
            return f"/{self.source}"
        return self.target if self.target.startswith("/") else f"/{self.target}"


RestartMode = Annotated[str, BeforeValidator(lambda v: "no" if v is False else v)]


class Service(_Strict):
    """One service, in normal form.  ``name`` is filled in from its key."""

    name: str = ""
    extends: str | dict[str, str] | None = None
    """Resolved by the loader (``extends``); None in a loaded project."""
    image: str | None = None
    build: BuildConfig | None = None
    command: Command | None = None
    entrypoint: Command | None = None
    environment: StrMap = Field(default_factory=dict)
    env_file: StrList = Field(default_factory=list)
    ports: Annotated[list[PortConfig], BeforeValidator(_ports)] = Field(default_factory=list)
    expose: Annotated[
        list[str], BeforeValidator(lambda v: [str(x) for x in v] if isinstance(v, list) else v)
    ] = Field(default_factory=list)
    volumes: Annotated[list[VolumeMount], BeforeValidator(_volumes)] = Field(default_factory=list)
    tmpfs: StrList = Field(default_factory=list)
    networks: Annotated[dict[str, ServiceNetwork], BeforeValidator(_service_networks)] = Field(
        default_factory=dict
    )
    network_mode: str | None = None
    depends_on: Annotated[dict[str, DependsOn], BeforeValidator(_depends_on)] = Field(
        default_factory=dict
    )
    links: list[str] = Field(default_factory=list)
    healthcheck: Healthcheck | None = None
    restart: RestartMode | None = None
    labels: Labels = Field(default_factory=dict)
    container_name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    mac_address: str | None = None
    stop_grace_period: Duration | None = None
    stop_signal: str | None = None
    user: str | None = None
    working_dir: str | None = None
    profiles: list[str] = Field(default_factory=list)
    deploy: Deploy | None = None
    scale: int | None = Field(default=None, ge=0)
    extra_hosts: list[str] = Field(default_factory=list)
    dns: StrList = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    privileged: bool = False
    read_only: bool = False
    init: bool | None = None
    tty: bool = False
    stdin_open: bool = False
    shm_size: ByteSize | None = None
    mem_limit: ByteSize | None = None
    cpus: float | None = None
    sysctls: Labels = Field(default_factory=dict)
    ulimits: dict[str, int | dict[str, int]] = Field(default_factory=dict)
    logging: Logging | None = None
    platform: str | None = None
    pull_policy: Literal["always", "never", "missing", "if_not_present", "build"] | None = None
    security_opt: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    pid: str | None = None
    ipc: str | None = None
    group_add: Annotated[
        list[str], BeforeValidator(lambda v: [str(x) for x in v] if isinstance(v, list) else v)
    ] = Field(default_factory=list)
    oom_score_adj: int | None = Field(default=None, ge=-1000, le=1000)
    oom_kill_disable: bool | None = None
    mem_reservation: ByteSize | None = None
    memswap_limit: (
        Annotated[int, BeforeValidator(lambda v: -1 if v in (-1, "-1") else parse_bytes(v))] | None
    ) = None
    mem_swappiness: int | None = Field(default=None, ge=0, le=100)
    pids_limit: int | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    cpu_count: int | None = None
    cpu_percent: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    runtime: str | None = None
    userns_mode: str | None = None
    cgroup_parent: str | None = None
    dns_search: StrList = Field(default_factory=list)
    dns_opt: list[str] = Field(default_factory=list)
    device_cgroup_rules: list[str] = Field(default_factory=list)
    storage_opt: dict[str, str] = Field(default_factory=dict)
    secrets: list[ServiceSecret] = Field(default_factory=list)
    configs: list[ServiceConfigRef] = Field(default_factory=list)

    @field_validator("restart")
    @classmethod
    def _restart(cls, value: str | None) -> str | None:
        if value is None:
            return None
        mode, _, count = value.partition(":")
        if mode not in ("no", "always", "on-failure", "unless-stopped") or (
            count and (mode != "on-failure" or not count.isdigit())
        ):
            raise ValueError(
                f"{value!r} is not a restart policy (no, always, on-failure[:N], unless-stopped)"
            )
        return value

    @field_validator("extra_hosts", mode="before")
    @classmethod
    def _extra_hosts(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [f"{host}:{ip}" for host, ip in value.items()]
        if isinstance(value, list):
            out = []
            for item in value:
                host, sep, ip = str(item).replace("=", ":", 1).partition(":")
                if not sep or not host or not ip:
                    raise ValueError(f"{item!r} is not HOST:IP")
                out.append(f"{host}:{ip}")
            return out
        return value

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}", value):
            raise ValueError(f"{value!r} is not a MAC address")
        return value

    @property
    def implicit_dependencies(self) -> list[str]:
        """Services this one needs created first without a ``depends_on``: the targets of
        ``links`` and of ``network_mode``/``pid``/``ipc: service:NAME``."""
        out = [link.split(":", 1)[0] for link in self.links]
        for mode in (self.network_mode, self.pid, self.ipc):
            if mode and mode.startswith("service:"):
                out.append(mode.split(":", 1)[1])
        return [name for name in dict.fromkeys(out) if name not in self.depends_on]

    @property
    def all_dependencies(self) -> list[str]:
        return [*self.depends_on, *self.implicit_dependencies]

    @property
    def replicas(self) -> int:
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1 if self.scale is None else self.scale


class NetworkIpamConfig(_Strict):
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = Field(default_factory=dict)


class NetworkIpam(_Strict):
    driver: str | None = None
    config: list[NetworkIpamConfig] = Field(default_factory=list)
    options: dict[str, str] = Field(default_factory=dict)


class NetworkConfig(_Strict):
    name: str | None = None
    driver: str | None = None
    driver_opts: dict[str, str] = Field(default_factory=dict)
    ipam: NetworkIpam | None = None
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: Labels = Field(default_factory=dict)

    @field_validator("external", mode="before")
    @classmethod
    def _external(cls, value: Any) -> Any:
        return True if isinstance(value, dict) else value


class VolumeConfig(_Strict):
    name: str | None = None
    driver: str | None = None
    driver_opts: dict[str, str] = Field(default_factory=dict)
    external: bool = False
    labels: Labels = Field(default_factory=dict)

    @field_validator("external", mode="before")
    @classmethod
    def _external(cls, value: Any) -> Any:
        return True if isinstance(value, dict) else value


class SecretConfig(_Strict):
    """A top-level secret or config: a file (mounted read-only), or external (Swarm)."""

    name: str | None = None
    file: str | None = None
    environment: str | None = None
    external: bool = False
    labels: Labels = Field(default_factory=dict)

    @field_validator("external", mode="before")
    @classmethod
    def _external(cls, value: Any) -> Any:
        return True if isinstance(value, dict) else value


def _named_entries(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {name: ({} if cfg is None else cfg) for name, cfg in value.items()}
    return value


class ComposeProject(BaseModel):
    """A whole project: the merged files, interpolated, in normal form."""

    model_config = ConfigDict(extra="forbid")

    name: str
    working_dir: str = ""
    config_files: list[str] = Field(default_factory=list)
    services: dict[str, Service] = Field(default_factory=dict)
    networks: dict[str, NetworkConfig] = Field(default_factory=dict)
    volumes: dict[str, VolumeConfig] = Field(default_factory=dict)
    secrets: dict[str, SecretConfig] = Field(default_factory=dict)
    configs: dict[str, SecretConfig] = Field(default_factory=dict)
    extensions: dict[str, Any] = Field(default_factory=dict)

    def network_name(self, key: str) -> str:
        """The engine's name of the network the project calls ``key``."""
        cfg = self.networks.get(key) or NetworkConfig()
        if cfg.name:
            return cfg.name
        if cfg.external:
            return key
        return f"{self.name}_{key}"

    def volume_name(self, key: str) -> str:
        cfg = self.volumes.get(key) or VolumeConfig()
        if cfg.name:
            return cfg.name
        if cfg.external:
            return key
        return f"{self.name}_{key}"

    def service_networks(self, service: Service) -> dict[str, ServiceNetwork]:
        """The networks a service joins (``default`` when it names none), highest
        priority first then by name, as docker-compose orders them; empty for a
        ``network_mode`` service."""
        if service.network_mode is not None:
            return {}
        networks = service.networks or {"default": ServiceNetwork()}
        return dict(sorted(networks.items(), key=lambda item: (-item[1].priority, item[0])))
