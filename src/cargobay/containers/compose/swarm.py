"""``compose deploy --swarm``: a project as a Swarm stack, through the Engine API.

What ``docker stack deploy -c FILE NAME`` does, for the keys Swarm supports: the stack's
networks (``<stack>_<network>``, overlay) are created when missing, each service becomes
a Swarm service ``<stack>_<service>`` (created, or updated in place when it exists),
named volumes become ``<stack>_<volume>`` mounts, and everything carries the label
``com.docker.stack.namespace=<stack>`` that ``docker stack ls/ps/rm`` look for.  Keys
Swarm ignores are reported as warnings (the same list as ``export --swarm``).

Swarm schedules tasks with the node's own images: with no registry, the image must be
present on the node (a single-node swarm uses the local image after a failed pull).
``stack_service_spec`` is pure (unit-tested); the rest is thin I/O.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker

from cargobay.containers.compose.executor import Event
from cargobay.containers.compose.export import export_swarm
from cargobay.containers.compose.loader import LoadedProject
from cargobay.containers.compose.model import ComposeProject, Service
from cargobay.containers.compose.spec import image_name, resolve_environment
from cargobay.containers.engine import DockerEngine
from cargobay.errors import ComposeError, ContainerError, NetworkNotFound

__all__ = [
    "NAMESPACE",
    "deploy_stack",
    "remove_stack",
    "stack_network_name",
    "stack_service_spec",
]

NAMESPACE = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"
NANO = 1_000_000_000


def stack_network_name(stack: str, key: str, project: ComposeProject) -> str:
    cfg = project.networks.get(key)
    if cfg is not None and (cfg.external or cfg.name):
        return cfg.name or key
    return f"{stack}_{key}"


def stack_secret_name(
    stack: str, key: str, project: ComposeProject, section: str = "secrets"
) -> str:
    """The Swarm name of a stack's secret (or config, with ``section="configs"``)."""
    cfg = getattr(project, section).get(key)
    if cfg is not None and (cfg.external or cfg.name):
        return cfg.name or key
    return f"{stack}_{key}"


def _command(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def stack_service_spec(
    project: ComposeProject, service: Service, environment: dict[str, str]
) -> dict[str, Any]:
    """The ``POST /services/create`` body of one service of the stack."""
    stack = project.name
    image = image_name(project, service)
    container: dict[str, Any] = {
        "Image": image,
        "Labels": {**service.labels, NAMESPACE: stack},
        "Env": [
            f"{k}={v}"
            for k, v in resolve_environment(service, environment).items()
            if v is not None
        ],
    }
    if (entrypoint := _command(service.entrypoint)) is not None:
        container["Command"] = entrypoint
    if (args := _command(service.command)) is not None:
        container["Args"] = args
    for key, value in (
        ("Dir", service.working_dir),
        ("User", service.user),
        ("Hostname", service.hostname),
        ("StopSignal", service.stop_signal),
    ):
        if value:
            container[key] = value
    if service.stop_grace_period is not None:
        container["StopGracePeriod"] = int(service.stop_grace_period * NANO)
    if service.tty:
        container["TTY"] = True
    if service.extra_hosts:
        container["Hosts"] = [
            f"{ip} {host}" for host, _, ip in (h.partition(":") for h in service.extra_hosts)
        ]
    mounts = []
    for mount in service.volumes:
        entry: dict[str, Any] = {
            "Type": mount.type,
            "Target": mount.target,
            "ReadOnly": mount.read_only,
        }
        if mount.type == "volume" and mount.source:
            cfg = project.volumes.get(mount.source)
            if cfg is not None and cfg.name:
                entry["Source"] = cfg.name
            elif cfg is not None and cfg.external:
                entry["Source"] = mount.source
            else:
                entry["Source"] = f"{stack}_{mount.source}"
            entry["VolumeOptions"] = {"Labels": {NAMESPACE: stack}}
        elif mount.type == "bind":
            entry["Source"] = mount.source
        elif mount.type == "tmpfs" and mount.tmpfs is not None and mount.tmpfs.size:
            entry["TmpfsOptions"] = {"SizeBytes": mount.tmpfs.size}
        mounts.append(entry)
    if mounts:
        container["Mounts"] = mounts
    secrets = []
    for secret in service.secrets:
        target = secret.path.removeprefix("/run/secrets/")
        secrets.append({
            "SecretName": stack_secret_name(stack, secret.source, project),
            "File": {"Name": target, "UID": secret.uid or "0", "GID": secret.gid or "0",
                     "Mode": secret.mode if secret.mode is not None else 0o444},
        })  # fmt: skip
    if secrets:
        container["Secrets"] = secrets
    configs = []
    for config in service.configs:
        configs.append({
            "ConfigName": stack_secret_name(stack, config.source, project, "configs"),
            "File": {"Name": config.path, "UID": config.uid or "0", "GID": config.gid or "0",
                     "Mode": config.mode if config.mode is not None else 0o444},
        })  # fmt: skip
    if configs:
        container["Configs"] = configs
    if service.healthcheck is not None:
        hc = service.healthcheck
        health: dict[str, Any] = {"Test": ["NONE"] if hc.disable else (hc.test or [])}
        for key, seconds in (
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
        ):
            if seconds is not None:
                health[key] = int(seconds * NANO)
        if hc.retries is not None:
            health["Retries"] = hc.retries
        container["Healthcheck"] = health

    task: dict[str, Any] = {"ContainerSpec": container}
    deploy = service.deploy
    resources: dict[str, Any] = {}
    if deploy is not None and deploy.resources is not None:
        for part, key in (("limits", "Limits"), ("reservations", "Reservations")):
            section = getattr(deploy.resources, part)
            if section is None:
                continue
            out: dict[str, Any] = {}
            if section.cpus:
                out["NanoCPUs"] = int(section.cpus * NANO)
            if section.memory:
                out["MemoryBytes"] = section.memory
            if out:
                resources[key] = out
    if resources:
        task["Resources"] = resources
    policy: dict[str, Any] | None = None
    if deploy is not None and deploy.restart_policy is not None:
        rp = deploy.restart_policy
        policy = {"Condition": rp.condition}
        if rp.max_attempts is not None:
            policy["MaxAttempts"] = rp.max_attempts
        if rp.delay is not None:
            policy["Delay"] = int(rp.delay * NANO)
        if rp.window is not None:
            policy["Window"] = int(rp.window * NANO)
    elif service.restart:
        mode, _, count = service.restart.partition(":")
        condition = {"no": "none", "always": "any", "unless-stopped": "any"}.get(mode, mode)
        policy = {"Condition": condition}
        if count:
            policy["MaxAttempts"] = int(count)
    if policy is not None:
        task["RestartPolicy"] = policy
    if deploy is not None and deploy.placement is not None and deploy.placement.constraints:
        task["Placement"] = {"Constraints": list(deploy.placement.constraints)}
    networks = []
    for key, net in project.service_networks(service).items():
        networks.append(
            {
                "Target": stack_network_name(stack, key, project),
                "Aliases": sorted({service.name, *net.aliases}),
            }
        )
    if networks:
        task["Networks"] = networks

    spec: dict[str, Any] = {
        "Name": f"{stack}_{service.name}",
        "Labels": {**(deploy.labels if deploy else {}), NAMESPACE: stack, IMAGE_LABEL: image},
        "TaskTemplate": task,
    }
    if deploy is not None and deploy.mode == "global":
        spec["Mode"] = {"Global": {}}
    else:
        spec["Mode"] = {"Replicated": {"Replicas": service.replicas}}
    ports = []
    for port in service.ports:
        entry = {"Protocol": port.protocol, "TargetPort": port.target, "PublishMode": port.mode}
        if port.published:
            entry["PublishedPort"] = int(port.published.split("-")[0])
        ports.append(entry)
    if ports:
        spec["EndpointSpec"] = {"Ports": ports}
    return spec


async def _query(engine: DockerEngine, path: str, method: str = "GET", **kwargs: Any) -> Any:
    try:
        return await engine.docker._query_json(path, method, **kwargs)
    except aiodocker.DockerError as err:
        raise ComposeError(f"{method} /{path}: {err.message}") from err


async def deploy_stack(
    engine_url: str | None, loaded: LoadedProject, *, emit: Callable[[Event], None]
) -> dict[str, Any]:
    """Create or update the stack's networks and services; returns their names."""
    project = loaded.project
    stack = project.name
    for warning in export_swarm(loaded).warnings:
        emit({"type": "warning", "message": warning})
    async with await DockerEngine.connect(engine_url) as engine:
        info = await engine.info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise ComposeError(
                "this Docker Engine is not a Swarm manager; run `docker swarm init` first "
                "(or deploy with `up` instead)"
            )
        used = sorted({k for s in project.services.values() for k in project.service_networks(s)})
        networks = []
        for key in used:
            name = stack_network_name(stack, key, project)
            try:
                await engine.inspect_network(name)
            except NetworkNotFound:
                cfg = project.networks.get(key)
                if cfg is not None and cfg.external:
                    raise ComposeError(f"external network {name} does not exist") from None
                emit(
                    {"type": "progress", "resource": "network", "name": name, "status": "Creating"}
                )
                await engine.create_network(
                    name,
                    driver=(
                        cfg.driver if cfg and cfg.driver not in (None, "bridge") else "overlay"
                    ),
                    labels={**(cfg.labels if cfg else {}), NAMESPACE: stack},
                    attachable=bool(cfg and cfg.attachable),
                    options=dict(cfg.driver_opts) if cfg else None,
                )
            networks.append(name)
        secret_ids = await _ensure_objects(engine, project, "secrets", emit)
        config_ids = await _ensure_objects(engine, project, "configs", emit)
        existing = {
            s["Spec"]["Name"]: s
            for s in await _query(
                engine,
                "services",
                params={"filters": json.dumps({"label": [f"{NAMESPACE}={stack}"]})},
            )
        }
        services = []
        for name, service in project.services.items():
            spec = stack_service_spec(project, service, loaded.environment)
            for entry in spec["TaskTemplate"]["ContainerSpec"].get("Secrets", []):
                entry["SecretID"] = secret_ids[entry["SecretName"]]
            for entry in spec["TaskTemplate"]["ContainerSpec"].get("Configs", []):
                entry["ConfigID"] = config_ids[entry["ConfigName"]]
            current = existing.get(spec["Name"])
            if current is None:
                emit(
                    {
                        "type": "progress",
                        "resource": "service",
                        "name": spec["Name"],
                        "status": "Creating",
                        "service": name,
                    }
                )
                await _query(engine, "services/create", "POST", data=json.dumps(spec))
            else:
                emit(
                    {
                        "type": "progress",
                        "resource": "service",
                        "name": spec["Name"],
                        "status": "Updating",
                        "service": name,
                    }
                )
                await _query(
                    engine,
                    f"services/{current['ID']}/update",
                    "POST",
                    params={"version": current["Version"]["Index"]},
                    data=json.dumps(spec),
                )
            services.append(spec["Name"])
        return {"stack": stack, "networks": networks, "services": services}


async def _ensure_objects(
    engine: DockerEngine, project: ComposeProject, section: str, emit: Callable[[Event], None]
) -> dict[str, str]:
    """Swarm secrets (or configs) by name -> id: existing ones as they are (they cannot
    change), the project's file ones created from their files."""
    listed = await _query(engine, section)
    ids = {str(s["Spec"]["Name"]): str(s["ID"]) for s in listed}
    used = {ref.source for svc in project.services.values() for ref in getattr(svc, section)}
    for key in sorted(used):
        cfg = getattr(project, section)[key]
        name = stack_secret_name(project.name, key, project, section)
        if name in ids:
            continue
        if cfg.external or not cfg.file:
            raise ComposeError(f"external {section[:-1]} {name} does not exist in the swarm")
        data = await asyncio.to_thread(Path(cfg.file).read_bytes)
        emit({"type": "progress", "resource": section[:-1], "name": name, "status": "Creating"})
        created = await _query(
            engine,
            f"{section}/create",
            "POST",
            data=json.dumps({"Name": name, "Data": base64.b64encode(data).decode(),
                             "Labels": {**cfg.labels, NAMESPACE: project.name}}),
        )  # fmt: skip
        ids[name] = str(created["ID"])
    return ids


async def remove_stack(engine_url: str | None, stack: str, *, timeout: float = 60.0) -> None:
    """``docker stack rm``: the stack's services, then (once their tasks are gone) its
    networks."""
    async with await DockerEngine.connect(engine_url) as engine:
        label = json.dumps({"label": [f"{NAMESPACE}={stack}"]})
        for service in await _query(engine, "services", params={"filters": label}):
            await _query(engine, f"services/{service['ID']}", "DELETE")
        # Swarm drops a network once its tasks are gone (asynchronously; meanwhile a
        # removal may fail or answer "not found" for a network still listed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while networks := await engine.list_networks(labels={NAMESPACE: stack}):
            for network in networks:
                with contextlib.suppress(ContainerError):
                    await engine.remove_network(str(network["Id"]))
            if loop.time() > deadline:
                names = ", ".join(str(n.get("Name")) for n in networks)
                raise ComposeError(f"stack {stack}: networks {names} are still in use")
            await asyncio.sleep(0.5)
        for section in ("secrets", "configs"):
            while objects := await _query(engine, section, params={"filters": label}):
                for obj in objects:
                    with contextlib.suppress(ComposeError):  # used by a task going away
                        await _query(engine, f"{section}/{obj['ID']}", "DELETE")
                if loop.time() > deadline:
                    names = ", ".join(str(o["Spec"]["Name"]) for o in objects)
                    raise ComposeError(f"stack {stack}: {section} {names} are still in use")
                await asyncio.sleep(0.5)
