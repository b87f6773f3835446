"""Print a project: ``config`` (the resolved model), ``export --swarm`` (a file for
``docker stack deploy``) and ``export --kubernetes`` (Deployments, Services, PVCs).

All pure functions of a loaded project.  Each exporter returns the document(s) and a
list of warnings, one for every key the target ignores or changes the meaning of
(``container_name``, ``build``, ``depends_on`` conditions, ``restart`` ->
``deploy.restart_policy``, bind mounts, ...), so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cargobay.containers.compose.loader import LoadedProject
from cargobay.containers.compose.model import ComposeProject, Deploy, Service
from cargobay.containers.compose.spec import image_name, resolve_environment
from cargobay.containers.compose.values import format_duration

__all__ = [
    "Export",
    "config_document",
    "dump_yaml",
    "export_kubernetes",
    "export_swarm",
]


@dataclass
class Export:
    documents: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        return dump_yaml(*self.documents)


class _NoAliases(yaml.SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(*documents: Mapping[str, Any]) -> str:
    """YAML documents (``---`` between them), keys in model order, no anchors."""
    return str(
        yaml.dump_all(
            [dict(d) for d in documents],
            Dumper=_NoAliases,
            sort_keys=False,
            default_flow_style=False,
        )
    )


def config_document(loaded: LoadedProject) -> dict[str, Any]:
    """The resolved project as a Compose file (``docker compose config``): interpolated,
    merged, in long syntax, paths absolute, with its name."""
    project = loaded.project
    services: dict[str, Any] = {}
    for name, service in project.services.items():
        body = service.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        for key in ("stop_grace_period",):
            if service.stop_grace_period is not None:
                body[key] = format_duration(service.stop_grace_period)
        if service.deploy is not None:
            body["deploy"] = deploy_document(service.deploy)
        if service.healthcheck is not None:
            for key in ("interval", "timeout", "start_period", "start_interval"):
                value = getattr(service.healthcheck, key)
                if value is not None:
                    body["healthcheck"][key] = format_duration(value)
        services[name] = body
    doc: dict[str, Any] = {"name": project.name, "services": services}
    if project.networks:
        doc["networks"] = {
            k: v.model_dump(mode="json", exclude_defaults=True) for k, v in project.networks.items()
        }
    if project.volumes:
        doc["volumes"] = {
            k: v.model_dump(mode="json", exclude_defaults=True) for k, v in project.volumes.items()
        }
    _top_level_files(project, doc)
    doc.update(project.extensions)
    return doc


def _top_level_files(project: ComposeProject, doc: dict[str, Any]) -> None:
    for section in ("secrets", "configs"):
        entries = getattr(project, section)
        if entries:
            doc[section] = {
                k: v.model_dump(mode="json", exclude_defaults=True) for k, v in entries.items()
            }


# -- Swarm --------------------------------------------------------------------------------

_RESTART_TO_SWARM = {"no": "none", "always": "any", "on-failure": "on-failure",
                     "unless-stopped": "any"}  # fmt: skip


def deploy_document(deploy: Deploy) -> dict[str, Any]:
    """A ``deploy`` section as the file format writes it: durations as ``1m30s``, CPUs and
    memory as strings (``docker stack deploy`` insists)."""
    out = deploy.model_dump(mode="json", exclude_defaults=True)
    if deploy.restart_policy is not None:  # its condition is meaningful even as the default
        out["restart_policy"] = deploy.restart_policy.model_dump(mode="json", exclude_none=True)
    for part in ("limits", "reservations"):
        section = (out.get("resources") or {}).get(part) or {}
        for key in ("cpus", "memory"):
            if key in section:
                section[key] = str(section[key])
    for part, keys in (("restart_policy", ("delay", "window")),
                       ("update_config", ("delay", "monitor")),
                       ("rollback_config", ("delay", "monitor"))):  # fmt: skip
        section = out.get(part) or {}
        for key in keys:
            if section.get(key) is not None:
                section[key] = format_duration(section[key])
    return out


def _swarm_restart(service: Service, warn: list[str]) -> dict[str, Any] | None:
    if service.deploy is not None and service.deploy.restart_policy is not None:
        if service.restart:
            warn.append(f"service {service.name!r}: 'restart' is ignored by Swarm; "
                        "deploy.restart_policy is used")  # fmt: skip
        return deploy_document(service.deploy)["restart_policy"]  # type: ignore[no-any-return]
    if not service.restart:
        return None
    mode, _, count = service.restart.partition(":")
    policy: dict[str, Any] = {"condition": _RESTART_TO_SWARM[mode]}
    if count:
        policy["max_attempts"] = int(count)
    warn.append(
        f"service {service.name!r}: 'restart: {service.restart}' is ignored by Swarm; "
        f"exported as deploy.restart_policy.condition: {policy['condition']}"
    )
    return policy


_SWARM_IGNORED = (
    ("container_name", "Swarm names tasks itself"),
    ("mac_address", "Swarm assigns addresses"),
    ("network_mode", "Swarm services join networks"),
    ("links", "use service names on a shared network"),
    ("privileged", "Swarm services cannot be privileged"),
    ("devices", "Swarm services cannot map devices"),
    ("security_opt", "not supported by Swarm services"),
    ("profiles", "every exported service is deployed"),
    ("expose", "every port is reachable on the stack's networks"),
    ("domainname", "not supported by Swarm services"),
)


def export_swarm(loaded: LoadedProject) -> Export:
    """A file for ``docker stack deploy -c FILE <project>`` and what Swarm will ignore."""
    project = loaded.project
    warn: list[str] = []
    services: dict[str, Any] = {}
    for name, service in project.services.items():
        out: dict[str, Any] = {"image": image_name(project, service)}
        if service.build is not None:
            warn.append(
                f"service {name!r}: 'build' is ignored by Swarm; build and push "
                f"{out['image']} to a registry every node can pull from"
            )
        for key, why in _SWARM_IGNORED:
            if getattr(service, key):
                warn.append(f"service {name!r}: '{key}' is ignored by Swarm ({why})")
        conditions = {d: c.condition for d, c in service.depends_on.items()}
        if conditions:
            warn.append(
                f"service {name!r}: 'depends_on' ({', '.join(sorted(conditions))}) is ignored "
                "by Swarm: services start in any order and must retry their dependencies"
            )
        if service.command is not None:
            out["command"] = service.command
        if service.entrypoint is not None:
            out["entrypoint"] = service.entrypoint
        env = resolve_environment(service, loaded.environment)
        if env:
            out["environment"] = {k: v for k, v in env.items() if v is not None}
        if service.labels:
            out["labels"] = dict(service.labels)
        ports = []
        for port in service.ports:
            entry: dict[str, Any] = {"target": port.target, "protocol": port.protocol,
                                     "mode": port.mode}  # fmt: skip
            if port.published:
                if "-" in port.published:
                    warn.append(f"service {name!r}: the published range {port.published} is "
                                "exported as its first port")  # fmt: skip
                entry["published"] = int(port.published.split("-")[0])
            if port.host_ip:
                warn.append(f"service {name!r}: host IP {port.host_ip} of port {port.target} is "
                            "ignored by Swarm (it publishes on every node address)")  # fmt: skip
            ports.append(entry)
        if ports:
            out["ports"] = ports
        volumes = []
        for mount in service.volumes:
            entry = {"type": mount.type, "target": mount.target}
            if mount.source:
                entry["source"] = mount.source
            if mount.read_only:
                entry["read_only"] = True
            if mount.type == "bind":
                warn.append(f"service {name!r}: bind mount {mount.source} must exist on every "
                            "node that runs the service")  # fmt: skip
            if mount.type == "tmpfs" and mount.tmpfs is not None and mount.tmpfs.size:
                entry["tmpfs"] = {"size": mount.tmpfs.size}
            volumes.append(entry)
        if volumes:
            out["volumes"] = volumes
        nets: dict[str, Any] = {}
        for key, net in project.service_networks(service).items():
            cfg: dict[str, Any] = {}
            if net.aliases:
                cfg["aliases"] = list(net.aliases)
            if net.ipv4_address:
                warn.append(f"service {name!r}: ipv4_address on network {key!r} is ignored by "
                            "Swarm")  # fmt: skip
            nets[key] = cfg or None
        if nets and list(nets) != ["default"]:
            out["networks"] = nets
        if service.healthcheck is not None:
            hc = service.healthcheck
            health: dict[str, Any] = {"disable": True} if hc.disable else {"test": hc.test}
            for key in ("interval", "timeout", "start_period"):
                value = getattr(hc, key)
                if value is not None:
                    health[key] = format_duration(value)
            if hc.retries is not None:
                health["retries"] = hc.retries
            out["healthcheck"] = health
        for key in ("user", "working_dir", "hostname", "stop_signal"):
            if getattr(service, key):
                out[key] = getattr(service, key)
        if service.stop_grace_period is not None:
            out["stop_grace_period"] = format_duration(service.stop_grace_period)
        if service.extra_hosts:
            out["extra_hosts"] = list(service.extra_hosts)
        if service.cap_add:
            out["cap_add"] = list(service.cap_add)
        if service.cap_drop:
            out["cap_drop"] = list(service.cap_drop)
        for section in ("secrets", "configs"):
            refs = getattr(service, section)
            if refs:
                out[section] = [ref.model_dump(mode="json", exclude_none=True) for ref in refs]
        deploy: dict[str, Any] = {}
        if service.deploy is not None:
            deploy = deploy_document(service.deploy)
            deploy.pop("restart_policy", None)
        deploy["replicas"] = service.replicas
        limits = (deploy.get("resources") or {}).get("limits") or {}
        if service.mem_limit and "memory" not in limits:
            limits["memory"] = str(service.mem_limit)
        if service.cpus and "cpus" not in limits:
            limits["cpus"] = str(service.cpus)
        if limits:
            deploy.setdefault("resources", {})["limits"] = limits
        policy = _swarm_restart(service, warn)
        if policy is not None:
            deploy["restart_policy"] = policy
        out["deploy"] = deploy
        services[name] = out
    doc: dict[str, Any] = {"version": "3.8", "services": services}
    _top_level_files(project, doc)
    networks: dict[str, Any] = {}
    for key, cfg_net in project.networks.items():
        body = cfg_net.model_dump(mode="json", exclude_defaults=True)
        if cfg_net.driver in (None, "bridge") and not cfg_net.external:
            if cfg_net.driver == "bridge":
                warn.append(f"network {key!r}: driver bridge becomes overlay in a Swarm stack")
            body["driver"] = "overlay"
        networks[key] = body
    if networks:
        doc["networks"] = networks
    if project.volumes:
        doc["volumes"] = {
            k: v.model_dump(mode="json", exclude_defaults=True) or None
            for k, v in project.volumes.items()
        }
    return Export([doc], warn)


# -- Kubernetes ---------------------------------------------------------------------------


def _k8s_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return cleaned[:63] or "x"


def _command(value: str | list[str] | None) -> list[str] | None:
    import shlex

    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def _probe(service: Service) -> dict[str, Any] | None:
    hc = service.healthcheck
    if hc is None or hc.disable or not hc.test or hc.test[0] == "NONE":
        return None
    command = hc.test[1:] if hc.test[0] == "CMD" else ["/bin/sh", "-c", " ".join(hc.test[1:])]
    probe: dict[str, Any] = {"exec": {"command": command}}
    if hc.interval is not None:
        probe["periodSeconds"] = max(1, int(hc.interval))
    if hc.timeout is not None:
        probe["timeoutSeconds"] = max(1, int(hc.timeout))
    if hc.start_period is not None:
        probe["initialDelaySeconds"] = int(hc.start_period)
    if hc.retries is not None:
        probe["failureThreshold"] = max(1, hc.retries)
    return probe


def export_kubernetes(
    loaded: LoadedProject, *, storage: str = "1Gi", namespace: str | None = None
) -> Export:
    """Kubernetes manifests: a Deployment per service, a Service per service with ports,
    a PersistentVolumeClaim per named volume (``storage`` each)."""
    project: ComposeProject = loaded.project
    warn: list[str] = []
    docs: list[dict[str, Any]] = []
    part_of = {"app.kubernetes.io/part-of": project.name}

    def meta(name: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": _k8s_name(name), "labels": {**part_of, **(extra or {})}}
        if namespace:
            m["namespace"] = namespace
        return m

    for key, vol in project.volumes.items():
        if vol.external:
            warn.append(f"volume {key!r} is external: create the claim "
                        f"{_k8s_name(key)!r} yourself")  # fmt: skip
            continue
        docs.append({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(key),
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": storage}}},
        })  # fmt: skip
    for name, service in project.services.items():
        selector = {"app.kubernetes.io/name": _k8s_name(name)}
        container: dict[str, Any] = {"name": _k8s_name(name), "image": image_name(project, service)}
        if service.build is not None:
            warn.append(f"service {name!r}: 'build' is not exported; push {container['image']} "
                        "to a registry the cluster can pull from")  # fmt: skip
        if (entrypoint := _command(service.entrypoint)) is not None:
            container["command"] = entrypoint
        if (args := _command(service.command)) is not None:
            container["args"] = args
        env = resolve_environment(service, loaded.environment)
        if env:
            container["env"] = [{"name": k, "value": v or ""} for k, v in env.items()]
        if service.working_dir:
            container["workingDir"] = service.working_dir
        if service.user:
            user = service.user.split(":")
            if user[0].isdigit():
                container["securityContext"] = {"runAsUser": int(user[0])}
                if len(user) > 1 and user[1].isdigit():
                    container["securityContext"]["runAsGroup"] = int(user[1])
            else:
                warn.append(f"service {name!r}: user {service.user!r} is not numeric; "
                            "Kubernetes needs a uid (runAsUser)")  # fmt: skip
        ports = [{"containerPort": p.target, "protocol": p.protocol.upper()}
                 for p in service.ports]  # fmt: skip
        if ports:
            container["ports"] = ports
        if (probe := _probe(service)) is not None:
            container["livenessProbe"] = probe
            container["readinessProbe"] = dict(probe)
        resources: dict[str, Any] = {}
        limits = service.deploy.resources if service.deploy is not None else None
        if limits is not None and limits.limits is not None:
            lim: dict[str, Any] = {}
            if limits.limits.cpus:
                lim["cpu"] = str(limits.limits.cpus)
            if limits.limits.memory:
                lim["memory"] = str(limits.limits.memory)
            if lim:
                resources["limits"] = lim
        if limits is not None and limits.reservations is not None:
            req: dict[str, Any] = {}
            if limits.reservations.cpus:
                req["cpu"] = str(limits.reservations.cpus)
            if limits.reservations.memory:
                req["memory"] = str(limits.reservations.memory)
            if req:
                resources["requests"] = req
        if resources:
            container["resources"] = resources
        pod_volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        for index, mount in enumerate(service.volumes):
            vname = f"v{index}"
            if mount.type == "volume" and mount.source:
                pod_volumes.append(
                    {"name": vname, "persistentVolumeClaim": {"claimName": _k8s_name(mount.source)}}
                )
            elif mount.type == "volume":
                pod_volumes.append({"name": vname, "emptyDir": {}})
            elif mount.type == "tmpfs":
                pod_volumes.append({"name": vname, "emptyDir": {"medium": "Memory"}})
            else:
                warn.append(f"service {name!r}: bind mount {mount.source} becomes a hostPath "
                            "volume; the path must exist on the node")  # fmt: skip
                pod_volumes.append({"name": vname, "hostPath": {"path": mount.source}})
            entry: dict[str, Any] = {"name": vname, "mountPath": mount.target}
            if mount.read_only:
                entry["readOnly"] = True
            mounts.append(entry)
        if mounts:
            container["volumeMounts"] = mounts
        pod: dict[str, Any] = {"containers": [container]}
        if pod_volumes:
            pod["volumes"] = pod_volumes
        if service.extra_hosts:
            by_ip: dict[str, list[str]] = {}
            for item in service.extra_hosts:
                host, _, ip = item.partition(":")
                by_ip.setdefault(ip, []).append(host)
            pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in by_ip.items()]
        if service.stop_grace_period is not None:
            pod["terminationGracePeriodSeconds"] = int(service.stop_grace_period)
        if service.restart in ("no", "on-failure") or (
            service.restart and service.restart.startswith("on-failure")
        ):
            warn.append(f"service {name!r}: restart {service.restart!r} is not possible for a "
                        "Deployment (its pods always restart)")  # fmt: skip
        if service.depends_on:
            warn.append(f"service {name!r}: depends_on is not exported; Kubernetes starts pods "
                        "in any order (use readiness probes and retries)")  # fmt: skip
        if service.secrets or service.configs:
            warn.append(f"service {name!r}: secrets and configs are not exported; create "
                        "Kubernetes Secrets/ConfigMaps and mount them yourself")  # fmt: skip
        for key in ("container_name", "mac_address", "network_mode", "links"):
            if getattr(service, key):
                warn.append(f"service {name!r}: '{key}' has no Kubernetes equivalent; ignored")
        for key, net in project.service_networks(service).items():
            if net.aliases or net.ipv4_address:
                warn.append(f"service {name!r}: aliases/addresses on network {key!r} are "
                            "ignored (pods reach each other through Services)")  # fmt: skip
        docs.append({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, selector),
            "spec": {
                "replicas": service.replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": {**part_of, **selector,
                                                     **service.labels}}, "spec": pod},
            },
        })  # fmt: skip
        service_ports = []
        for port in service.ports:
            published = port.published.split("-")[0] if port.published else None
            service_ports.append({
                "name": f"{port.protocol}-{port.target}",
                "port": int(published) if published else port.target,
                "targetPort": port.target,
                "protocol": port.protocol.upper(),
            })  # fmt: skip
        if service_ports:
            unique = {(p["port"], p["protocol"]): p for p in service_ports}
            docs.append({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(name, selector),
                "spec": {"selector": selector, "ports": list(unique.values())},
            })  # fmt: skip
    return Export(docs, warn)
