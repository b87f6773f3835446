"""The ``com.docker.compose.config-hash`` label, computed as docker-compose 1.29.2 does.

docker-compose decides whether a container is up to date by comparing the hash on its
label with the hash of the service's current configuration.  For a stack started by one
tool to be "up-to-date" for the other, both must compute the same hash, so this module
rebuilds, from the service as written, the exact structure 1.29.2 hashes
(``Service.config_dict()``)::

    {"options": <the service's options after compose's config pipeline>,
     "image_id": <the image's Id, or None>, "links": [[service, alias]...],
     "net": <primary network's full name, or the network_mode>, "ipc_mode": ...,
     "networks": {<full network name>: <its service-level config>},
     "secrets": [], "volumes_from": []}

and hashes it like ``compose.utils.json_hash``: SHA-256 of ``json.dumps(sort_keys=True,
separators=(",", ":"))``.  The details that matter, learnt from 1.29.2's code and checked
against its output (tests/integration/containers/compose):

- values go through 1.29's type conversions (label values to strings, port numbers to
  ints, ...) after interpolation;
- short-syntax ports become ``[target, published, protocol, mode, host_ip]`` arrays
  (namedtuples serialize as arrays) with None where not written, long syntax the same;
- short-syntax volumes become ``[source, target, mode]`` arrays (paths normalized,
  named volumes by their full name), long syntax a mapping of the non-empty fields;
- ``environment`` is resolved (env files, then the file's own list or mapping; a bare
  name takes the interpolation environment's value or null);
- ``restart`` becomes ``{"Name", "MaximumRetryCount"}``; ``deploy`` disappears into
  ``restart``/``mem_limit``/``cpus``/``mem_reservation``;
- ``networks``, ``links``, ``network_mode``, ``pid``, ``ipc``, ``secrets``,
  ``volumes_from`` and ``scale`` leave the options; ``platform`` and ``device_requests``
  are always there (null when unset); ``volumes`` always (``[]`` when unset).

Pure: the caller passes the image id it looked up.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cargobay.containers.compose.interpolation import read_env_file
from cargobay.containers.compose.model import ComposeProject

__all__ = ["compose129_config_dict", "config_hash", "convert", "json_hash", "parse_port_129"]


def json_hash(obj: Any) -> str:
    dump = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(dump.encode("utf8")).hexdigest()


# -- 1.29's type conversions after interpolation -----------------------------------------


def _to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return str(value)
    return value


def _to_int(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"0[0-9]+", text):
        text = "0o" + text[1:]
    return int(text, 0)


def _to_float(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


def _to_bool(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    lowered = value.lower()
    if lowered in ("y", "yes", "true", "on"):
        return True
    if lowered in ("n", "no", "false", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _bytes(value: Any) -> Any:
    from cargobay.containers.compose.values import parse_bytes

    return parse_bytes(value) if isinstance(value, str) else value


_J = "[^/]+"
_CONVERSIONS: list[tuple[re.Pattern[str], Callable[[Any], Any]]] = [
    (re.compile(f"^{pattern}$"), func)
    for pattern, func in (
        ("build/labels/.+", _to_str),
        ("cpus", _to_float),
        ("cpu_count", _to_int),
        ("healthcheck/retries", _to_int),
        ("healthcheck/disable", _to_bool),
        (f"deploy/labels/{_J}", _to_str),
        ("deploy/replicas", _to_int),
        ("deploy/placement/max_replicas_per_node", _to_int),
        ("deploy/resources/limits/cpus", _to_float),
        ("deploy/restart_policy/max_attempts", _to_int),
        ("mem_swappiness", _to_int),
        ("labels/.+", _to_str),
        ("oom_kill_disable", _to_bool),
        ("oom_score_adj", _to_int),
        ("ports/target", _to_int),
        ("ports/published", _to_int),
        ("scale", _to_int),
        (f"ulimits/{_J}", _to_int),
        (f"ulimits/{_J}/soft", _to_int),
        (f"ulimits/{_J}/hard", _to_int),
        ("privileged", _to_bool),
        ("read_only", _to_bool),
        ("stdin_open", _to_bool),
        ("tty", _to_bool),
        ("volumes/read_only", _to_bool),
        ("volumes/volume/nocopy", _to_bool),
        ("volumes/tmpfs/size", _bytes),
    )
]


def convert(node: Any, path: str = "") -> Any:
    """A service dict with 1.29's type conversions applied (``path`` is the key path
    inside the service, ``/``-separated)."""
    if isinstance(node, dict):
        return {k: convert(v, f"{path}/{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [convert(item, path) for item in node]
    for pattern, func in _CONVERSIONS:
        if pattern.match(path):
            return func(node)
    return node


# -- 1.29's config pipeline ---------------------------------------------------------------


def _expand_path(working_dir: str, path: str) -> str:
    return os.path.abspath(os.path.join(working_dir, os.path.expanduser(path)))


def _split_kv(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value


def _split_env(item: str) -> tuple[str, str | None]:
    key, found, value = item.partition("=")
    return key, (value if found else None)


def _dict_or_list(value: Any, split: Callable[[str], tuple[str, Any]]) -> dict[str, Any]:
    if not value:
        return {}
    if isinstance(value, list):
        return dict(split(item) for item in value)
    return dict(value)


_PORT_SPEC = re.compile(
    r"^((\[?(?P<host>[a-fA-F\d.:]+)\]?:)?(?P<ext>\d*)(-(?P<ext_end>\d+))?:)?"
    r"(?P<int>\d+)(-(?P<int_end>\d+))?(?P<proto>/(udp|tcp|sctp))?$"
)


def parse_port_129(spec: Any) -> list[tuple[Any, ...]]:
    """One ``ports`` entry as 1.29's ServicePorts: ``(target, published, protocol, mode,
    host_ip)`` tuples (a tuple given is one already parsed by a merge)."""
    if isinstance(spec, tuple):
        return [spec]
    if isinstance(spec, dict):
        return [tuple(_long_port(spec))]
    return [tuple(port) for port in _short_ports(spec)]


def _short_ports(spec: Any) -> list[list[Any]]:
    """docker-py's ``build_port_bindings`` for one entry, then 1.29's ServicePort."""
    match = _PORT_SPEC.match(str(spec))
    if match is None:
        raise ValueError(f"invalid port {spec!r}")
    proto = (match.group("proto") or "").lstrip("/") or None
    start = int(match.group("int"))
    end = int(match.group("int_end") or start)
    internal = list(range(start, end + 1))
    ext, ext_end = match.group("ext"), match.group("ext_end")
    external: list[Any]
    if not ext:
        external = [None] * len(internal)
    elif not ext_end:
        external = [int(ext)]
    elif len(internal) == 1:
        external = [f"{ext}-{ext_end}"]
    else:
        external = list(range(int(ext), int(ext_end) + 1))
    host = match.group("host")
    bindings: dict[int, list[Any]] = {}
    for target, published in zip(internal, external, strict=False):
        bindings.setdefault(target, []).append(published)
    out: list[list[Any]] = []
    for target, publisheds in bindings.items():
        for published in publisheds:
            out.append([target, published, proto, None, host if published or host else None])
    return out


def _long_port(spec: Mapping[str, Any]) -> list[Any]:
    published = spec.get("published")
    if published is not None and not (isinstance(published, str) and "-" in published):
        published = int(published)
    target = spec.get("target")
    return [int(target) if target else target, published or None, spec.get("protocol"),
            spec.get("mode"), None]  # fmt: skip


def _resolve_volume(working_dir: str, volume: Any) -> Any:
    if isinstance(volume, dict):
        source = volume.get("source", "")
        if (
            isinstance(source, str)
            and source.startswith((".", "~"))
            and volume.get("type") == "bind"
        ):
            volume = {**volume, "source": _expand_path(working_dir, source)}
        return volume
    container, _, rest = str(volume).partition(":")
    if not rest:
        return volume
    host = container
    container, _, mode = rest.partition(":")
    if ":" in mode:
        # "a:b:c:d": compose keeps the last part as the mode
        extra, _, mode = mode.rpartition(":")
        container = f"{container}:{extra}"
    if host.startswith("."):
        host = _expand_path(working_dir, host)
    host = os.path.expanduser(host)
    return f"{host}:{container}" + (f":{mode}" if mode else "")


def _volume_spec(volume: str) -> list[Any]:
    parts = volume.split(":")
    if len(parts) > 3:
        raise ValueError(f"invalid volume {volume!r}")
    if len(parts) == 1:
        return [None, os.path.normpath(parts[0]), "rw"]
    mode = parts[2] if len(parts) == 3 else "rw"
    return [os.path.normpath(parts[0]), os.path.normpath(parts[1]), mode]


def _mount_spec(mount: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(mount)
    if data.get("source"):
        data["source"] = os.path.normpath(data["source"])
    out = {k: data[k] for k in ("type", "source", "target", "read_only", "consistency")
           if data.get(k)}  # fmt: skip
    options = data.get(str(data.get("type")))
    if options:
        out[str(data["type"])] = options
    return out


def _nanoseconds(value: Any) -> Any:
    if isinstance(value, int):
        return value
    from cargobay.containers.compose.values import parse_duration

    return int(parse_duration(str(value)) * 1_000_000_000)


def _restart_spec(value: Any) -> Any:
    if not value:
        return None
    name, _, count = str(value).partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _build_string_dict(source: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v if v is not None else "") for k, v in source.items()}


def process_service_129(options: dict[str, Any], working_dir: str) -> dict[str, Any]:
    """1.29's ``process_service`` on a converted service dict (in place, returned):
    paths made absolute against ``working_dir``, ports parsed into tuples, labels and
    ``depends_on`` as mappings, health check durations in nanoseconds.  Running it twice
    gives the same result (1.29 runs it on an ``extends`` base, then on the merge)."""
    if "env_file" in options:
        options["env_file"] = [_expand_path(working_dir, p) for p in _as_list(options["env_file"])]
    if "build" in options:
        build = options["build"]
        if isinstance(build, str):
            options["build"] = build if "://" in build else _expand_path(working_dir, build)
        elif isinstance(build, dict):
            if "context" in build:
                build["context"] = _expand_path(working_dir, build["context"])
            if "labels" in build:
                build["labels"] = _dict_or_list(build["labels"], _split_kv)
    if "volumes" in options and options.get("volume_driver") is None:
        options["volumes"] = [_resolve_volume(working_dir, v) for v in options["volumes"]]
    if "sysctls" in options:
        options["sysctls"] = _build_string_dict(_dict_or_list(options["sysctls"], _split_kv))
    if "labels" in options:
        options["labels"] = _dict_or_list(options["labels"], _split_kv)
    if "depends_on" in options and not isinstance(options["depends_on"], dict):
        options["depends_on"] = {
            name: {"condition": "service_started"} for name in options["depends_on"]
        }
    for key in ("dns", "dns_search", "tmpfs"):
        if key in options:
            options[key] = _as_list(options[key])
    if "healthcheck" in options:
        health = options["healthcheck"]
        if "disable" in health:
            del health["disable"]
            health["test"] = ["NONE"]
        for key in ("interval", "timeout", "start_period"):
            if key in health and not isinstance(health[key], int):
                health[key] = _nanoseconds(health[key])
    if "ports" in options:
        options["ports"] = [port for spec in options["ports"] for port in parse_port_129(spec)]
    if options.get("security_opt"):
        options["security_opt"] = [
            [value, None] if isinstance(value, str) else value for value in options["security_opt"]
        ]

    return options


def compose129_config_dict(
    project: ComposeProject,
    service_name: str,
    raw: Mapping[str, Any],
    environment: Mapping[str, str],
    image_id: str | None,
    service_containers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The structure docker-compose 1.29.2 hashes for a service (module docstring).

    ``service_containers`` maps a service to the id of its running container, for
    ``ipc: service:NAME``, which 1.29 hashes as ``container:<id>`` (None when it does not
    run); ``network_mode: service:NAME`` is hashed as NAME."""
    running = service_containers or {}
    working_dir = project.working_dir
    options: dict[str, Any] = convert(copy.deepcopy(dict(raw)))

    options = process_service_129(options, working_dir)
    env_files = list(_as_list(options.get("env_file")))
    options["ports"] = [list(port) for port in options.get("ports", [])]
    if not options["ports"] and "ports" not in raw:
        del options["ports"]

    # finalize_service
    if "environment" in options or "env_file" in options:
        env: dict[str, Any] = {}
        for env_path in env_files:
            env.update(read_env_file(Path(env_path), environment))
        env.update(_dict_or_list(options.get("environment"), _split_env))
        options["environment"] = {
            k: (v if v is not None else environment.get(k)) for k, v in env.items()
        }
        options.pop("env_file", None)
    mounts: list[Any] = []
    for volume in options.get("volumes", []):
        mounts.append(_mount_spec(volume) if isinstance(volume, dict) else _volume_spec(volume))
    networks_option = options.pop("networks", None)
    if "restart" in options:
        options["restart"] = _restart_spec(options["restart"])
    if "build" in options:
        build = options["build"]
        if isinstance(build, str):
            options["build"] = {"context": build}
        elif "args" in build:
            args = _dict_or_list(build["args"], _split_env)
            build["args"] = _build_string_dict(
                {k: (v if v is not None else environment.get(k)) for k, v in args.items()}
            )

    # Project.from_config
    service_networks: dict[str, Any] = {}
    network_mode = options.pop("network_mode", None)
    if network_mode is None:
        declared = _dict_or_list(networks_option, lambda k: (k, None)) or {"default": None}
        for key, cfg in declared.items():
            service_networks[project.network_name(key)] = cfg or {}
        if any(cfg.get("priority") for cfg in service_networks.values()):
            ordered = sorted(
                service_networks.items(), key=lambda t: t[1].get("priority") or 0, reverse=True
            )
        else:
            ordered = sorted(service_networks.items())
        service_networks = dict(ordered)
        net: str | None = next(iter(service_networks), "none")
    else:
        net = network_mode
        if isinstance(network_mode, str) and network_mode.startswith("service:"):
            net = network_mode.split(":", 1)[1]  # ServiceNetworkMode.id: the service name
    links = []
    for link in options.pop("links", []) or []:
        target, sep, alias = link.partition(":")
        links.append([target, alias if sep else None])
    options.pop("pid", None)
    ipc_mode = options.pop("ipc", None)
    if isinstance(ipc_mode, str) and ipc_mode.startswith("service:"):
        target = running.get(ipc_mode.split(":", 1)[1])
        ipc_mode = f"container:{target}" if target else None
    options.pop("volumes_from", None)
    secrets = _secrets(project, options.pop("secrets", None) or [])
    options["volumes"] = [_namespace(project, m) for m in mounts]
    options.pop("scale", None)
    options["device_requests"] = _device_requests(options)
    options.pop("credential_spec", None)
    options.pop("configs", None)
    deploy = options.pop("deploy", None)
    if deploy:
        policy = deploy.get("restart_policy")
        if policy is not None:
            condition = {"any": "always", "none": "no", "on-failure": "on-failure"}
            options["restart"] = {
                "Name": condition[policy.get("condition", "any")],
                "MaximumRetryCount": policy.get("max_attempts", 0),
            }
        resources = deploy.get("resources", {}) or {}
        if "limits" in resources:
            options["mem_limit"] = resources["limits"].get("memory")
            if "cpus" in resources["limits"]:
                options["cpus"] = float(resources["limits"]["cpus"])
        if "reservations" in resources:
            options["mem_reservation"] = resources["reservations"].get("memory")
    options["platform"] = options.pop("platform", None)
    options.pop("name", None)
    return {
        "options": options,
        "image_id": image_id,
        "links": links,
        "net": net,
        "ipc_mode": ipc_mode,
        "networks": service_networks,
        "secrets": secrets,
        "volumes_from": [],
    }


def _secrets(project: ComposeProject, specs: list[Any]) -> list[dict[str, Any]]:
    """1.29's ``[{"secret": ServiceSecret, "file": path}]``, external secrets left out."""
    out = []
    for spec in specs:
        if isinstance(spec, str):
            fields: list[Any] = [spec, None, None, None, None, None]
        else:
            fields = [spec.get(k) for k in ("source", "target", "uid", "gid", "mode", "name")]
        defined = project.secrets.get(fields[0])
        if defined is None or defined.external:
            continue
        out.append({"secret": fields, "file": defined.file})
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _namespace(project: ComposeProject, mount: Any) -> Any:
    if isinstance(mount, list):
        source = mount[0]
        if source and not source.startswith((".", "/", "~")):
            return [project.volume_name(source), *mount[1:]]
        return mount
    if mount.get("type") == "volume" and mount.get("source"):
        return {**mount, "source": project.volume_name(mount["source"])}
    return mount


def _device_requests(options: Mapping[str, Any]) -> Any:
    deploy = options.get("deploy") or {}
    devices = ((deploy.get("resources") or {}).get("reservations") or {}).get("devices")
    if not devices:
        return None
    out = []
    for device in devices:
        device = dict(device)
        if device.get("count", -1) == "all":
            device["count"] = -1
        if "capabilities" in device:
            device["capabilities"] = [device["capabilities"]]
        out.append(device)
    return out


def config_hash(
    project: ComposeProject,
    service_name: str,
    raw: Mapping[str, Any],
    environment: Mapping[str, str],
    image_id: str | None,
    service_containers: Mapping[str, str] | None = None,
) -> str:
    """The ``com.docker.compose.config-hash`` docker-compose 1.29.2 would write."""
    return json_hash(
        compose129_config_dict(
            project, service_name, raw, environment, image_id, service_containers
        )
    )
