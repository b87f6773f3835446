"""How docker-compose 1.29.2 merges a service over several files, for the config hash.

With more than one file (``-f a.yml -f b.yml``, or a ``docker-compose.override.yml``
next to the main file), 1.29 passes *every* service through its merge, which also
normalizes it: lists such as ``cap_add``/``expose``/``profiles`` become sorted and
unique, ``volumes`` are keyed and sorted by container path, ``ports`` sorted by target,
``environment``/``labels``/``extra_hosts``/``depends_on`` become mappings, network
entries keep only the keys it knows, and keys it does not know (``x-*`` extensions,
``pull_policy``) disappear.  A hash computed from our own merge would then differ, and
docker-compose would recreate a stack we started (or we one it started).  So for the
hash we replay 1.29's merge on the per-file dicts (``merge_files``); the engine itself
uses the loader's merge, which follows the Compose Specification.

Values go through 1.29's type conversions first (``hashing.convert``), as 1.29 converts
each file during interpolation, before merging.  Ports come out as 5-tuples
``(target, published, protocol, mode, host_ip)``, which ``hashing`` keeps as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from typing import Any

__all__ = ["ALLOWED_KEYS", "merge_files", "merge_service"]

# fmt: off
ALLOWED_KEYS = frozenset(
    [
        "blkio_config", "build", "cap_add", "cap_drop", "cgroup_parent", "command",
        "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
        "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "detach",
        "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "dockerfile",
        "domainname", "entrypoint", "env_file", "environment", "extra_hosts", "group_add",
        "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links",
        "log_driver", "log_opt", "logging", "mac_address", "mem_limit", "mem_reservation",
        "mem_swappiness", "memswap_limit", "net", "network_mode", "oom_kill_disable",
        "oom_score_adj", "pid", "pids_limit", "platform", "ports", "privileged", "profiles",
        "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
        "stdin_open", "stop_grace_period", "stop_signal", "sysctls", "tty", "user", "userns_mode",
        "volume_driver", "volumes", "volumes_from", "working_dir",
    ]
)
# fmt: on
"""The service keys 1.29 keeps when it merges files (``compose.config.config``)."""


def _split_kv(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value


def _split_env(item: str) -> tuple[str, str | None]:
    key, found, value = item.partition("=")
    return key, (value if found else None)


def _mapping(value: Any, split: Callable[[str], tuple[str, Any]]) -> dict[str, Any]:
    if not value:
        return {}
    if isinstance(value, list):
        return dict(split(item) for item in value)
    return dict(value)


def _extra_hosts(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    out = {}
    for line in value:
        host, _, ip = str(line).partition(":")
        out[host.strip()] = ip.strip()
    return out


def _depends_on(value: Any) -> dict[str, Any]:
    return _mapping(value, lambda k: (k, {"condition": "service_started"}))


def _unique_sorted(base: Sequence[Any], override: Sequence[Any]) -> list[str]:
    return sorted({str(item) for item in [*base, *override]})


def _to_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _path_mapping(volume: Any) -> tuple[Any, Any]:
    if isinstance(volume, dict):
        return volume.get("target"), volume
    host, sep, rest = str(volume).partition(":")
    if not sep:
        return volume, None
    container, mode = rest, None
    if ":" in rest:
        container, mode = rest.rsplit(":", 1)
    return container, (host, mode)


def _join_path_mapping(pair: tuple[Any, Any]) -> Any:
    container, host = pair
    if isinstance(host, dict):
        return host
    if host is None:
        return container
    path, mode = host
    return f"{path}:{container}" + (f":{mode}" if mode else "")


def _merge_paths(base: Sequence[Any] | None, override: Sequence[Any] | None) -> list[Any]:
    merged = dict(_path_mapping(v) for v in base or [])
    merged.update(_path_mapping(v) for v in override or [])
    return [_join_path_mapping(item) for item in sorted(merged.items(), key=lambda kv: kv[0])]


def _ports(value: Sequence[Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    from cargobay.containers.compose.hashing import parse_port_129

    out = {}
    for spec in value:
        for port in parse_port_129(spec):
            out[(port[0], port[1], port[4], port[2])] = port
    return out


def _links(value: Sequence[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for spec in value:
        target, _, alias = spec.partition(":")
        out[alias or target] = (target, alias or target)
    return out


def _networks(base: Any, override: Any) -> dict[str, Any]:
    base = {k: {} for k in base} if isinstance(base, list) else (base or {})
    override = {k: {} for k in override} if isinstance(override, list) else (override or {})
    out: dict[str, Any] = {}
    for name in set(base) | set(override):
        b, o = base.get(name) or {}, override.get(name) or {}
        merged: dict[str, Any] = {}
        for key in ("aliases", "link_local_ips"):
            if key in b or key in o:
                merged[key] = _unique_sorted(b.get(key, []), o.get(key, []))
        for key in ("priority", "ipv4_address", "ipv6_address"):
            if key in b or key in o:
                merged[key] = o.get(key, b.get(key))
        out[name] = merged
    return out


def _json_key(obj: Any) -> str:
    from cargobay.containers.compose.hashing import json_hash

    return json_hash(obj)


def _unique_objects(base: Sequence[Any], override: Sequence[Any]) -> list[Any]:
    by_hash = {_json_key(item): item for item in [*base, *override]}
    return [by_hash[key] for key in sorted(by_hash)]


def _deploy(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    b, o = dict(base or {}), dict(override or {})
    out: dict[str, Any] = {}
    for key in ("mode", "endpoint_mode", "replicas"):
        if key in b or key in o:
            out[key] = o.get(key, b.get(key))
    if "labels" in b or "labels" in o:
        out["labels"] = {**_mapping(b.get("labels"), _split_kv),
                         **_mapping(o.get("labels"), _split_kv)}  # fmt: skip
    for key in ("update_config", "rollback_config", "restart_policy"):
        if key in b or key in o:
            out[key] = {**(b.get(key) or {}), **(o.get(key) or {})}
    if "resources" in b or "resources" in o:
        rb, ro = b.get("resources") or {}, o.get("resources") or {}
        resources: dict[str, Any] = {}
        if "limits" in rb or "limits" in ro:
            resources["limits"] = {**(rb.get("limits") or {}), **(ro.get("limits") or {})}
        if "reservations" in rb or "reservations" in ro:
            vb, vo = rb.get("reservations") or {}, ro.get("reservations") or {}
            reservations: dict[str, Any] = {}
            for key in ("cpus", "memory"):
                if key in vb or key in vo:
                    reservations[key] = vo.get(key, vb.get(key))
            if "devices" in vb or "devices" in vo:
                reservations["devices"] = _unique_objects(vb.get("devices", []),
                                                          vo.get("devices", []))  # fmt: skip
            resources["reservations"] = reservations
        out["resources"] = resources
    if "placement" in b or "placement" in o:
        pb, po = b.get("placement") or {}, o.get("placement") or {}
        placement: dict[str, Any] = {}
        if "max_replicas_per_node" in pb or "max_replicas_per_node" in po:
            placement["max_replicas_per_node"] = po.get(
                "max_replicas_per_node", pb.get("max_replicas_per_node")
            )
        if "constraints" in pb or "constraints" in po:
            placement["constraints"] = _unique_sorted(pb.get("constraints", []),
                                                      po.get("constraints", []))  # fmt: skip
        if "preferences" in pb or "preferences" in po:
            placement["preferences"] = _unique_objects(pb.get("preferences", []),
                                                       po.get("preferences", []))  # fmt: skip
        out["placement"] = placement
    return out


def _build(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    def as_dict(service: Mapping[str, Any]) -> dict[str, Any]:
        build = service.get("build", {})
        return {"context": build} if isinstance(build, str) else dict(build)

    b, o = as_dict(base), as_dict(override)
    out: dict[str, Any] = {}
    for key in ("context", "dockerfile", "network", "target", "shm_size", "isolation"):
        if key in b or key in o:
            out[key] = o.get(key, b.get(key))
    if "args" in b or "args" in o:
        out["args"] = {**_mapping(b.get("args"), _split_env), **_mapping(o.get("args"), _split_env)}
    if "cache_from" in b or "cache_from" in o:
        out["cache_from"] = _unique_sorted(b.get("cache_from", []), o.get("cache_from", []))
    if "labels" in b or "labels" in o:
        out["labels"] = {**_mapping(b.get("labels"), _split_kv),
                         **_mapping(o.get("labels"), _split_kv)}  # fmt: skip
    if "extra_hosts" in b or "extra_hosts" in o:
        out["extra_hosts"] = {**_extra_hosts(b.get("extra_hosts")),
                              **_extra_hosts(o.get("extra_hosts"))}  # fmt: skip
    return out


def _logging(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "driver" in base or "driver" in override:
        out["driver"] = override.get("driver", base.get("driver"))
    if out.get("driver") == base.get("driver") or base.get("driver") is None:
        if "options" in base or "options" in override:
            out["options"] = {**(base.get("options") or {}), **(override.get("options") or {})}
    elif override.get("options"):
        out["options"] = override.get("options", {})
    return out


def merge_service(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """1.29's ``merge_service_dicts`` (compose spec version) for one service."""
    out: dict[str, Any] = {}

    def present(key: str) -> bool:
        return key in base or key in override

    for key, split in (("environment", _split_env), ("labels", _split_kv),
                       ("sysctls", _split_kv)):  # fmt: skip
        if present(key):
            out[key] = {**_mapping(base.get(key), split), **_mapping(override.get(key), split)}
    for key in ("ulimits", "storage_opt"):
        if present(key):
            out[key] = {**dict(base.get(key) or {}), **dict(override.get(key) or {})}
    if present("depends_on"):
        out["depends_on"] = {**_depends_on(base.get("depends_on")),
                             **_depends_on(override.get("depends_on"))}  # fmt: skip
    if present("links"):
        links = {**_links(base.get("links", [])), **_links(override.get("links", []))}
        out["links"] = [t if t == a else f"{t}:{a}" for t, a in sorted(links.values())]
    if present("security_opt"):
        opts = {str(v): str(v) for v in [*base.get("security_opt", []),
                                          *override.get("security_opt", [])]}  # fmt: skip
        out["security_opt"] = sorted(opts.values())
    for key in ("secrets", "configs"):
        if present(key):
            merged: dict[str, tuple[Any, ...]] = {}
            for spec in [*base.get(key, []), *override.get(key, [])]:
                if isinstance(spec, str):
                    spec = {"source": spec}
                fields = ("source", "target", "uid", "gid", "mode", "name")
                merged[spec.get("source")] = tuple(spec.get(f) for f in fields)
            out[key] = [
                {f: v for f, v in zip(("source", "target", "uid", "gid", "mode", "name"), item,
                                      strict=True) if v is not None}
                for item in sorted(merged.values(), key=lambda t: str(t[0]))
            ]  # fmt: skip
    if present("extra_hosts"):
        out["extra_hosts"] = {**_extra_hosts(base.get("extra_hosts")),
                              **_extra_hosts(override.get("extra_hosts"))}  # fmt: skip
    if present("networks"):
        out["networks"] = _networks(base.get("networks", {}), override.get("networks", {}))
    for key in ("volumes", "devices"):
        if present(key):
            out[key] = _merge_paths(base.get(key), override.get(key))
    for key in ("cap_add", "cap_drop", "expose", "external_links", "volumes_from",
                "device_cgroup_rules", "profiles"):  # fmt: skip
        if present(key):
            out[key] = _unique_sorted(base.get(key, []), override.get(key, []))
    for key in ("dns", "dns_search", "env_file", "tmpfs"):
        if present(key):
            out[key] = _to_list(base.get(key)) + _to_list(override.get(key))
    if present("logging"):
        out["logging"] = _logging(base.get("logging", {}), override.get("logging", {}))
    if present("ports"):
        ports = {**_ports(base.get("ports", [])), **_ports(override.get("ports", []))}
        out["ports"] = sorted(ports.values(), key=lambda p: p[0])
    if present("blkio_config"):
        out["blkio_config"] = {**(base.get("blkio_config") or {}),
                               **(override.get("blkio_config") or {})}  # fmt: skip
    if present("healthcheck"):
        health = override.get("healthcheck") or {}
        if health.get("disabled") is True:
            out["healthcheck"] = health
        else:
            out["healthcheck"] = {**(base.get("healthcheck") or {}), **health}
    if present("deploy"):
        out["deploy"] = _deploy(base.get("deploy"), override.get("deploy"))
    for key in ALLOWED_KEYS - set(out):
        if present(key):
            out[key] = override.get(key, base.get(key))
    if present("build"):
        out["build"] = _build(base, override)
    return out


def merge_files(files: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each service as 1.29 sees it after merging ``files`` (per-file service dicts, already
    converted); a single file is returned as it is, as 1.29 does."""
    if len(files) == 1:
        return {name: dict(body) for name, body in files[0].items()}

    def merge(
        base: Mapping[str, Mapping[str, Any]], override: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        out = {}
        for n in set(base) | set(override):
            b, o = base.get(n, {}), override.get(n, {})
            out[n] = merge_service(b, o)
            if "extends" in o or "extends" in b:  # merge_service_dicts_from_files keeps it
                out[n]["extends"] = o.get("extends", b.get("extends"))
        return out

    return reduce(merge, files[1:], {n: dict(b) for n, b in files[0].items()})
