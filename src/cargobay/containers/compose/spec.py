"""From a service to the Engine API's ``POST /containers/create`` body (sans-IO).

One function per resource: ``container_create_body`` for a container (with the labels
and config hash), ``network_create_args`` and ``volume_create_args`` for the project's
networks and volumes.  The container joins its primary network (highest priority, then
by name) at creation; ``extra_networks`` are connected before it starts, each with the
service name plus the configured aliases, as docker-compose does.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.interpolation import read_env_file
from cargobay.containers.compose.model import ComposeProject, Service, ServiceNetwork
from cargobay.errors import ComposeFileError

__all__ = [
    "ContainerSpec",
    "container_create_body",
    "image_name",
    "network_create_args",
    "resolve_environment",
    "volume_create_args",
]

NANO = 1_000_000_000


@dataclass
class ContainerSpec:
    name: str
    body: dict[str, Any]
    extra_networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Engine network name -> ``{"aliases": [...], "ipv4_address": ...}``."""


def image_name(project: ComposeProject, service: Service) -> str:
    """The image a service runs: its ``image``, or ``<project>_<service>`` for a build
    without one (docker-compose 1.29's name, so both tools find the same image)."""
    return service.image or f"{project.name.lstrip('-_')}_{service.name}"


def resolve_environment(service: Service, environment: Mapping[str, str]) -> dict[str, str | None]:
    """The container's variables: env files first, then ``environment``; a bare name takes
    the caller's value, or stays unset (None)."""
    out: dict[str, str | None] = {}
    for path in service.env_file:
        try:
            out.update(read_env_file(Path(path), environment))
        except OSError as err:
            raise ComposeFileError(
                f"cannot read env file {path}: {err.strerror or err}",
                service=service.name,
                key="env_file",
            ) from err
    out.update(service.environment)
    return {k: (v if v is not None else environment.get(k)) for k, v in out.items()}


def _command(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def _aliases(service: Service, net: ServiceNetwork) -> list[str]:
    return sorted({service.name, *net.aliases})


def _endpoint(service: Service, net: ServiceNetwork) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"Aliases": _aliases(service, net)}
    ipam: dict[str, str] = {}
    if net.ipv4_address:
        ipam["IPv4Address"] = net.ipv4_address
    if net.ipv6_address:
        ipam["IPv6Address"] = net.ipv6_address
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if net.mac_address:
        endpoint["MacAddress"] = net.mac_address
    return endpoint


def container_create_body(
    project: ComposeProject,
    service: Service,
    number: int,
    *,
    config_hash: str,
    environment: Mapping[str, str],
    environment_file: str | None = None,
) -> ContainerSpec:
    """The create body of container ``number`` of ``service``."""
    name = service.container_name or L.container_name(project.name, service.name, number)
    env = resolve_environment(service, environment)
    config: dict[str, Any] = {
        "Image": image_name(project, service),
        "Env": [k if v is None else f"{k}={v}" for k, v in env.items()],
        "Labels": L.container_labels(
            project=project.name,
            service=service.name,
            number=number,
            config_hash=config_hash,
            working_dir=project.working_dir,
            config_files=project.config_files,
            environment_file=environment_file,
            user_labels=service.labels,
        ),
        "Tty": service.tty,
        "OpenStdin": service.stdin_open,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    if (cmd := _command(service.command)) is not None:
        config["Cmd"] = cmd
    if (entrypoint := _command(service.entrypoint)) is not None:
        config["Entrypoint"] = entrypoint
    for key, value in (
        ("User", service.user),
        ("WorkingDir", service.working_dir),
        ("Hostname", service.hostname),
        ("Domainname", service.domainname),
        ("MacAddress", service.mac_address),
        ("StopSignal", service.stop_signal),
    ):
        if value:
            config[key] = value
    if service.stop_grace_period is not None:
        config["StopTimeout"] = int(service.stop_grace_period)
    exposed: dict[str, dict[str, Any]] = {}
    for expose in service.expose:
        text = str(expose)
        exposed[text if "/" in text else f"{text}/tcp"] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in service.ports:
        key = f"{port.target}/{port.protocol}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": port.host_ip or "", "HostPort": port.published or ""}
        )
    if exposed:
        config["ExposedPorts"] = exposed
    if service.healthcheck is not None:
        hc = service.healthcheck
        health: dict[str, Any] = {"Test": ["NONE"] if hc.disable else (hc.test or [])}
        for key, seconds in (
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
            ("StartInterval", hc.start_interval),
        ):
            if seconds is not None:
                health[key] = int(seconds * NANO)
        if hc.retries is not None:
            health["Retries"] = hc.retries
        config["Healthcheck"] = health

    host: dict[str, Any] = {"PortBindings": bindings}
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for mount in service.volumes:
        if mount.type == "volume" and not mount.source:
            anonymous[mount.target] = {}
            continue
        if mount.type == "tmpfs":
            entry: dict[str, Any] = {"Type": "tmpfs", "Target": mount.target}
            if mount.tmpfs is not None and (mount.tmpfs.size or mount.tmpfs.mode):
                entry["TmpfsOptions"] = {
                    k: v
                    for k, v in (("SizeBytes", mount.tmpfs.size), ("Mode", mount.tmpfs.mode))
                    if v
                }
            mounts.append(entry)
            continue
        source = mount.source or ""
        if mount.type == "volume":
            source = project.volume_name(source)
        if mount.type == "bind" and (mount.bind is None or mount.bind.create_host_path):
            # a "Binds" entry creates a missing host directory, as docker-compose does
            mode = "ro" if mount.read_only else "rw"
            if mount.bind is not None and mount.bind.selinux:
                mode += f",{mount.bind.selinux}"
            if mount.bind is not None and mount.bind.propagation:
                mode += f",{mount.bind.propagation}"
            binds.append(f"{source}:{mount.target}:{mode}")
            continue
        entry = {"Type": mount.type, "Source": source, "Target": mount.target,
                 "ReadOnly": mount.read_only}  # fmt: skip
        if mount.type == "volume" and mount.volume is not None and mount.volume.nocopy:
            entry["VolumeOptions"] = {"NoCopy": True}
        if mount.type == "bind" and mount.bind is not None and mount.bind.propagation:
            entry["BindOptions"] = {"Propagation": mount.bind.propagation}
        mounts.append(entry)
    refs = [(r, project.secrets.get(r.source)) for r in service.secrets]
    refs += [(r, project.configs.get(r.source)) for r in service.configs]
    for ref, defined in refs:
        if defined is None or defined.external or not defined.file:
            continue  # external ones exist only in a Swarm (docker-compose skips them too)
        mounts.append(
            {"Type": "bind", "Source": defined.file, "Target": ref.path, "ReadOnly": True}
        )
    if anonymous:
        config["Volumes"] = anonymous
    if binds:
        host["Binds"] = binds
    if mounts:
        host["Mounts"] = mounts
    if service.tmpfs:
        host["Tmpfs"] = {
            path.split(":", 1)[0]: (path.split(":", 1)[1] if ":" in path else "")
            for path in service.tmpfs
        }
    if service.restart:
        mode, _, count = service.restart.partition(":")
        host["RestartPolicy"] = {"Name": "" if mode == "no" else mode,
                                 "MaximumRetryCount": int(count or 0)}  # fmt: skip
    elif service.deploy is not None and service.deploy.restart_policy is not None:
        policy = service.deploy.restart_policy
        mode = {"any": "always", "none": "", "on-failure": "on-failure"}[policy.condition]
        host["RestartPolicy"] = {"Name": mode, "MaximumRetryCount": policy.max_attempts or 0}
    memory, cpus = service.mem_limit, service.cpus
    reservation: int | None = None
    pids: int | None = None
    if service.deploy is not None and service.deploy.resources is not None:
        limits = service.deploy.resources.limits
        if limits is not None:
            memory = limits.memory or memory
            cpus = limits.cpus or cpus
            pids = limits.pids
        if service.deploy.resources.reservations is not None:
            reservation = service.deploy.resources.reservations.memory
    if memory:
        host["Memory"] = memory
    if cpus:
        host["NanoCpus"] = int(cpus * NANO)
    if reservation:
        host["MemoryReservation"] = reservation
    if pids:
        host["PidsLimit"] = pids
    for key, values in (
        ("ExtraHosts", service.extra_hosts),
        ("CapAdd", service.cap_add),
        ("CapDrop", service.cap_drop),
        ("Dns", service.dns),
        ("SecurityOpt", service.security_opt),
    ):
        if values:
            host[key] = list(values)
    if service.privileged:
        host["Privileged"] = True
    if service.read_only:
        host["ReadonlyRootfs"] = True
    if service.init is not None:
        host["Init"] = service.init
    if service.shm_size:
        host["ShmSize"] = service.shm_size
    if service.sysctls:
        host["Sysctls"] = dict(service.sysctls)
    if service.ulimits:
        host["Ulimits"] = [
            {"Name": n, "Soft": v, "Hard": v}
            if isinstance(v, int)
            else {"Name": n, "Soft": v.get("soft", 0), "Hard": v.get("hard", 0)}
            for n, v in service.ulimits.items()
        ]
    if service.logging is not None and service.logging.driver:
        host["LogConfig"] = {"Type": service.logging.driver, "Config": service.logging.options}
    if service.devices:
        host["Devices"] = [_device(d) for d in service.devices]
    optional: tuple[tuple[str, Any], ...] = (
        ("PidMode", _namespace_mode(project, service.pid)),
        ("IpcMode", _namespace_mode(project, service.ipc)),
        ("GroupAdd", service.group_add or None),
        ("OomScoreAdj", service.oom_score_adj),
        ("OomKillDisable", service.oom_kill_disable),
        ("MemoryReservation", service.mem_reservation),
        ("MemorySwap", service.memswap_limit),
        ("MemorySwappiness", service.mem_swappiness),
        ("PidsLimit", service.pids_limit),
        ("CpuShares", service.cpu_shares),
        ("CpusetCpus", service.cpuset),
        ("CpuCount", service.cpu_count),
        ("CpuPercent", service.cpu_percent),
        ("CpuQuota", service.cpu_quota),
        ("CpuPeriod", service.cpu_period),
        ("Runtime", service.runtime),
        ("UsernsMode", service.userns_mode),
        ("CgroupParent", service.cgroup_parent),
        ("DnsSearch", service.dns_search or None),
        ("DnsOptions", service.dns_opt or None),
        ("DeviceCgroupRules", service.device_cgroup_rules or None),
        ("StorageOpt", service.storage_opt or None),
    )
    for key, setting in optional:
        if setting is not None and key not in host:
            host[key] = setting
    if service.links:
        host["Links"] = [
            f"{L.container_name(project.name, link.split(':')[0], 1)}:"
            f"{link.split(':', 1)[1] if ':' in link else link}"
            for link in service.links
        ]

    extra: dict[str, dict[str, Any]] = {}
    networks = project.service_networks(service)
    if service.network_mode is not None:
        host["NetworkMode"] = _network_mode(project, service.network_mode)
    elif networks:
        (primary_key, primary), *others = networks.items()
        primary_name = project.network_name(primary_key)
        host["NetworkMode"] = primary_name
        config["NetworkingConfig"] = {
            "EndpointsConfig": {primary_name: _endpoint(service, primary)}
        }
        for key, net in others:
            extra[project.network_name(key)] = {
                "aliases": _aliases(service, net),
                "ipv4_address": net.ipv4_address,
            }
    config["HostConfig"] = host
    return ContainerSpec(name=name, body=config, extra_networks=extra)


def _network_mode(project: ComposeProject, mode: str) -> str:
    if mode.startswith("service:"):
        other = mode.split(":", 1)[1]
        target = project.services.get(other)
        name = (
            target.container_name
            if target is not None and target.container_name
            else L.container_name(project.name, other, 1)
        )
        return f"container:{name}"
    return mode


def _namespace_mode(project: ComposeProject, mode: str | None) -> str | None:
    """``pid``/``ipc``: ``service:NAME`` becomes that service's first container."""
    if mode is None or not mode.startswith("service:"):
        return mode
    return _network_mode(project, mode)


def _device(text: str) -> dict[str, str]:
    parts = text.split(":")
    host = parts[0]
    inside = parts[1] if len(parts) > 1 else host
    perms = parts[2] if len(parts) > 2 else "rwm"
    return {"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms}


def network_create_args(project: ComposeProject, key: str) -> dict[str, Any]:
    """Keyword arguments of ``DockerEngine.create_network`` for network ``key``."""
    from cargobay.containers.compose.model import NetworkConfig

    cfg = project.networks.get(key) or NetworkConfig()
    args: dict[str, Any] = {
        "name": project.network_name(key),
        "driver": cfg.driver or "bridge",
        "labels": L.network_labels(project.name, key, cfg.labels),
        "internal": cfg.internal,
        "attachable": True if cfg.attachable or not cfg.driver else cfg.attachable,
        "enable_ipv6": cfg.enable_ipv6,
        "options": dict(cfg.driver_opts),
    }
    if cfg.ipam is not None:
        args["ipam"] = {
            "Driver": cfg.ipam.driver or "default",
            "Config": [
                {
                    k: v
                    for k, v in (
                        ("Subnet", pool.subnet),
                        ("IPRange", pool.ip_range),
                        ("Gateway", pool.gateway),
                        ("AuxiliaryAddresses", pool.aux_addresses or None),
                    )
                    if v
                }
                for pool in cfg.ipam.config
            ],
            "Options": dict(cfg.ipam.options),
        }
    return args


def volume_create_args(project: ComposeProject, key: str) -> dict[str, Any]:
    """Keyword arguments of ``DockerEngine.create_volume`` for volume ``key``."""
    from cargobay.containers.compose.model import VolumeConfig

    cfg = project.volumes.get(key) or VolumeConfig()
    return {
        "name": project.volume_name(key),
        "driver": cfg.driver or "local",
        "labels": L.volume_labels(project.name, key, cfg.labels),
        "driver_opts": dict(cfg.driver_opts),
    }
