"""Load a Compose project: find the files, read ``.env``, interpolate, validate, merge.

The steps, in the order ``docker compose`` runs them:

1. the files: ``-f`` paths, or ``compose.yaml``/``docker-compose.yml`` (and an
   ``*.override.*`` next to it) in the project directory;
2. the environment for interpolation: the ``.env`` file (or ``--env-file``) overlaid by the
   caller's environment (the caller's wins);
3. each file: YAML, interpolation, structural validation (unknown keys, wrong types)
   against the model, so an error names the file it is in;
4. merge the files in order (mappings merge, ``ports``/``expose``/``dns`` add up,
   ``volumes`` merge by target, scalars override);
5. profiles, then project-wide checks: an image or a build for every service, defined
   networks/volumes/dependencies, no dependency cycle;
6. the project name: ``-p``, ``COMPOSE_PROJECT_NAME``, the top-level ``name:``, or the
   project directory's name, normalized as compose does.

The result keeps the merged raw dicts of the services too: the config hash must be
computed from what the user wrote, the way docker-compose 1.29 sees it (``hashing``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cargobay.containers.compose.extends import resolve_extends, resolve_extends_129
from cargobay.containers.compose.hashing import convert
from cargobay.containers.compose.interpolation import (
    InterpolationError,
    interpolate_tree,
    read_env_file,
)
from cargobay.containers.compose.merge129 import merge_files
from cargobay.containers.compose.model import (
    ComposeProject,
    NetworkConfig,
    SecretConfig,
    Service,
    VolumeConfig,
    _named_entries,
)
from cargobay.containers.compose.validate import find_cycle, validate_project
from cargobay.errors import ComposeFileError

__all__ = [
    "DEFAULT_FILES",
    "LoadedProject",
    "bare_project",
    "find_cycle",
    "load_project",
    "normalize_project_name",
]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)


class _FileModel(BaseModel):
    """One file's top level (everything optional: an override file may hold a part)."""

    model_config = ConfigDict(extra="forbid")

    version: str | float | None = None
    name: str | None = None
    services: dict[str, Service] = Field(default_factory=dict)
    networks: dict[str, NetworkConfig] = Field(default_factory=dict)
    volumes: dict[str, VolumeConfig] = Field(default_factory=dict)
    secrets: dict[str, SecretConfig] = Field(default_factory=dict)
    configs: dict[str, SecretConfig] = Field(default_factory=dict)


@dataclass
class LoadedProject:
    project: ComposeProject
    raw_services: dict[str, dict[str, Any]]
    """Each service's interpolated dict as docker-compose 1.29 merges it (``merge129``),
    for the config hash."""
    environment: dict[str, str]
    """The variables interpolation used (.env overlaid by the caller's environment)."""
    env_file: str | None = None
    warnings: list[str] = field(default_factory=list)
    disabled_services: list[str] = field(default_factory=list)


def bare_project(project_name: str, working_dir: str | Path | None = None) -> LoadedProject:
    """A project known only by its name (no file): enough for ``ps``, ``logs``, ``stop``
    and ``down``, which find its containers, networks and volumes by their labels, as
    ``docker compose -p NAME down`` does."""
    name = normalize_project_name(project_name)
    if not name:
        raise ComposeFileError(f"project name {project_name!r} is empty once normalized")
    directory = str(Path(working_dir).absolute()) if working_dir is not None else ""
    project = ComposeProject(name=name, working_dir=directory)
    return LoadedProject(project=project, raw_services={}, environment={})


def normalize_project_name(name: str) -> str:
    """Lowercase, only ``[a-z0-9_-]``, starting with a letter or digit (the Compose
    Specification's rule; docker-compose 1.29 applies the first two)."""
    cleaned = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return cleaned.lstrip("_-")


def _error(
    file: str, message: str, service: str | None = None, key: str | None = None
) -> ComposeFileError:
    return ComposeFileError(message, file=file, service=service, key=key)


def _find_default_files(directory: Path) -> list[Path]:
    for name in DEFAULT_FILES:
        candidate = directory / name
        if candidate.is_file():
            files = [candidate]
            for override in OVERRIDE_FILES:
                if (directory / override).is_file():
                    files.append(directory / override)
                    break
            return files
    raise ComposeFileError(
        f"no compose file in {directory} (looked for {', '.join(DEFAULT_FILES)}); pass one with -f",
        file=str(directory),
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise _error(str(path), f"cannot read the file: {err.strerror or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise _error(str(path), f"not valid YAML{where}: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _error(str(path), "the top level must be a mapping (services:, networks:, ...)")
    for key in data:
        if not isinstance(key, str):
            raise _error(str(path), f"top-level key {key!r} is not a string")
    return data


def _loc(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _validation_error(
    file: str, err: ValidationError, prefix: tuple[str, ...] = ()
) -> ComposeFileError:
    first = err.errors()[0]
    loc = [*prefix, *(p for p in first["loc"] if not isinstance(p, str) or "[" not in p)]
    # drop pydantic's union branch tags (e.g. "str", "list[str]", "function-before[...]")
    loc = [p for p in loc if not (isinstance(p, str) and (p in _TYPE_TAGS or "(" in p))]
    msg = str(first["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    kind = first["type"]
    if kind == "extra_forbidden":
        last = str(loc[-1]) if loc else ""
        msg = (
            f"'{last}' is part of the Compose Specification but not supported by cargobay "
            "compose yet"
            if last in _NOT_YET
            else "unknown key"
        )
    elif kind == "missing":
        msg = "missing required key"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem(s))"
    service = None
    key_parts = list(loc)
    if len(key_parts) >= 2 and key_parts[0] == "services":
        service = str(key_parts[1])
        key_parts = key_parts[2:]
    elif len(key_parts) >= 2 and key_parts[0] in ("networks", "volumes", "secrets", "configs"):
        key_parts = [f"{key_parts[0]}.{key_parts[1]}", *key_parts[2:]]
    return _error(file, msg, service, _loc(key_parts) or None)


_NOT_YET = {"include", "volumes_from", "external_links", "develop", "models"}
_TYPE_TAGS = {"str", "int", "float", "bool", "list[str]", "dict[str,str]", "none"}


# -- merging ------------------------------------------------------------------------------

_MAPPING_KEYS = {"environment", "labels", "depends_on", "networks", "sysctls", "extra_hosts"}
_ADDITIVE_KEYS = {"ports", "expose", "dns", "dns_search", "tmpfs", "cap_add", "cap_drop",
                  "env_file", "devices", "security_opt", "profiles"}  # fmt: skip


def _as_mapping(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            text = str(item)
            if key in ("depends_on", "networks"):
                out[text] = None
            elif key == "extra_hosts":
                host, _, ip = text.replace("=", ":", 1).partition(":")
                out[host] = ip
            else:
                name, found, rest = text.partition("=")
                out[name] = rest if found else None
        return out
    return {}


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key not in out:
            out[key] = value
        elif key in _MAPPING_KEYS:
            merged = _as_mapping(key, out[key])
            merged.update(_as_mapping(key, value))
            out[key] = merged
        elif key in _ADDITIVE_KEYS:
            before = out[key] if isinstance(out[key], list) else [out[key]]
            after = value if isinstance(value, list) else [value]
            out[key] = before + [item for item in after if item not in before]
        elif key == "volumes" and isinstance(out[key], list) and isinstance(value, list):
            by_target: dict[str, Any] = {}
            for item in [*out[key], *value]:
                by_target[_volume_target(item)] = item
            out[key] = list(by_target.values())
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge_service(out[key], value)
        else:
            out[key] = value
    return out


def _volume_target(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target"))
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


# -- the loader ---------------------------------------------------------------------------


def _interpolation_env(
    working_dir: Path, env: Mapping[str, str], env_file: Path | None
) -> tuple[dict[str, str], str | None]:
    path = env_file if env_file is not None else working_dir / ".env"
    values: dict[str, str] = {}
    used: str | None = None
    if env_file is not None or path.is_file():
        try:
            parsed = read_env_file(path, env)
        except OSError as err:
            raise _error(str(path), f"cannot read the env file: {err.strerror or err}") from err
        except InterpolationError as err:
            raise _error(str(path), str(err)) from err
        values = {k: v for k, v in parsed.items() if v is not None}
        used = str(path)
    values.update(env)
    return values, used


def load_project(
    files: Sequence[str | Path] = (),
    *,
    project_name: str | None = None,
    working_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    env_file: str | Path | None = None,
    profiles: Sequence[str] = (),
) -> LoadedProject:
    """Load, interpolate, validate and merge a project (see the module docstring).

    ``files`` are relative to ``working_dir`` (default: the current directory); the
    project directory is the first file's directory unless ``working_dir`` is given.
    ``env`` is the caller's environment (default: this process's)."""
    base = Path(working_dir) if working_dir is not None else Path.cwd()
    caller_env = dict(os.environ if env is None else env)
    if not files and caller_env.get("COMPOSE_FILE"):
        separator = caller_env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        files = [f for f in caller_env["COMPOSE_FILE"].split(separator) if f]
    if files:
        paths = [(base / Path(f)).absolute() for f in files]
    else:
        paths = _find_default_files(base.absolute())
    for path in paths:
        if not path.is_file():
            raise _error(str(path), "no such file")
    project_dir = Path(working_dir).absolute() if working_dir is not None else paths[0].parent
    env_path = (base / Path(env_file)).absolute() if env_file is not None else None
    variables, used_env_file = _interpolation_env(project_dir, caller_env, env_path)

    warnings: list[str] = []
    missing: set[str] = set()

    def on_missing(name: str) -> None:
        if name not in missing:
            missing.add(name)
            warnings.append(f"the {name} variable is not set; using an empty string")

    merged_services: dict[str, dict[str, Any]] = {}
    per_file: list[dict[str, dict[str, Any]]] = []
    service_files: dict[str, str] = {}
    networks: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    top_name: str | None = None
    for path in paths:
        raw = _read_yaml(path)
        try:
            data = interpolate_tree(raw, variables, on_missing=on_missing)
        except InterpolationError as err:
            parts = err.path.split(".")
            service = parts[1] if len(parts) > 2 and parts[0] == "services" else None
            key = ".".join(parts[2:]) if service else err.path
            raise _error(str(path), err.message, service, key or None) from err
        for key in [k for k in data if k.startswith("x-")]:
            extensions[key] = data.pop(key)
        for section in ("services", "networks", "volumes", "secrets", "configs"):
            if section in data and data[section] is None:
                data[section] = {}
            if section in data and not isinstance(data[section], dict):
                raise _error(str(path), f"'{section}' must be a mapping", key=section)
        for section in ("networks", "volumes", "secrets", "configs"):
            if section in data:
                data[section] = _named_entries(data[section])
        services = data.get("services") or {}
        for name, body in services.items():
            if body is None:
                services[name] = {}
            elif not isinstance(body, dict):
                raise _error(str(path), "a service must be a mapping", str(name))
        try:
            _FileModel.model_validate(data)
        except ValidationError as err:
            raise _validation_error(str(path), err) from err
        if data.get("name"):
            top_name = str(data["name"])
        per_file.append({name: convert(body) for name, body in services.items()})
        for name, body in services.items():
            merged_services[name] = _merge_service(merged_services.get(name, {}), body)
            service_files.setdefault(name, str(path))
        for name, body in (data.get("networks") or {}).items():
            networks[name] = {**networks.get(name, {}), **body}
        for name, body in (data.get("volumes") or {}).items():
            volumes[name] = {**volumes.get(name, {}), **body}
        for section, found in (("secrets", secrets), ("configs", configs)):
            for name, body in (data.get(section) or {}).items():
                if body.get("file"):
                    body = {**body, "file": _expand(str(body["file"]), project_dir)}
                found[name] = {**found.get(name, {}), **body}

    cache: dict[Path, dict[str, dict[str, Any]]] = {}

    def load_other(path: Path) -> dict[str, dict[str, Any]]:
        """Another file's services, interpolated (for ``extends: {file: ...}``)."""
        if path not in cache:
            raw_other = _read_yaml(path)
            try:
                other = interpolate_tree(raw_other, variables, on_missing=on_missing)
            except InterpolationError as err:
                raise _error(str(path), err.message, key=err.path) from err
            cache[path] = {k: dict(v or {}) for k, v in (other.get("services") or {}).items()}
        return cache[path]

    for svc in list(merged_services):
        merged_services[svc] = resolve_extends(
            svc,
            merged_services[svc],
            file=Path(service_files[svc]),
            project_dir=project_dir,
            services=merged_services,
            load_file=load_other,
            merge=_merge_service,
        )

    name_source = project_name or variables.get("COMPOSE_PROJECT_NAME") or top_name
    name = normalize_project_name(name_source or project_dir.name)
    if not name:
        raise ComposeFileError(
            f"project name {name_source or project_dir.name!r} is empty once normalized "
            "(lowercase letters, digits, - and _ only); pass one with -p",
            file=str(paths[0]),
        )

    enabled = set(profiles) or {
        p.strip() for p in variables.get("COMPOSE_PROFILES", "").split(",") if p.strip()
    }
    disabled = [
        svc
        for svc, body in merged_services.items()
        if body.get("profiles") and not (set(body["profiles"]) & enabled | {"*"} & enabled)
    ]

    services_models: dict[str, Service] = {}
    for svc, body in merged_services.items():
        if svc in disabled:
            continue
        try:
            model = Service.model_validate({**body, "name": svc})
        except ValidationError as err:
            raise _validation_error(service_files[svc], err, ("services", svc)) from err
        services_models[svc] = model
    try:
        project = ComposeProject(
            name=name,
            working_dir=str(project_dir),
            config_files=[str(p) for p in paths],
            services=services_models,
            networks=networks,
            volumes=volumes,
            secrets=secrets,
            configs=configs,
            extensions=extensions,
        )
    except ValidationError as err:
        raise _validation_error(str(paths[-1]), err) from err
    project = _resolve_paths(project, project_dir, variables)
    validate_project(project, service_files, disabled)
    as_129 = merge_files(per_file)

    def load_other_129(path: Path) -> dict[str, dict[str, Any]]:
        return {k: convert(v) for k, v in load_other(path).items()}

    raw = {
        svc: resolve_extends_129(
            svc,
            as_129[svc],
            file=paths[0],
            working_dir=project_dir,
            services=per_file[0],
            load_file=load_other_129,
        )
        for svc in merged_services
        if svc not in disabled
    }
    return LoadedProject(
        project=project,
        raw_services=raw,
        environment=variables,
        env_file=used_env_file,
        warnings=warnings,
        disabled_services=disabled,
    )


def _expand(path: str, project_dir: Path) -> str:
    expanded = os.path.expanduser(path)
    return os.path.normpath(os.path.join(project_dir, expanded))


def _resolve_paths(
    project: ComposeProject, project_dir: Path, variables: Mapping[str, str]
) -> ComposeProject:
    """Bind sources, build contexts and env files relative to the project directory."""
    services: dict[str, Service] = {}
    for name, service in project.services.items():
        update: dict[str, Any] = {}
        if service.volumes:
            mounts = []
            for mount in service.volumes:
                if mount.type == "bind" and mount.source:
                    mount = mount.model_copy(update={"source": _expand(mount.source, project_dir)})
                mounts.append(mount)
            update["volumes"] = mounts
        if service.build is not None and "://" not in service.build.context:
            context = _expand(service.build.context, project_dir)
            update["build"] = service.build.model_copy(update={"context": context})
        if service.env_file:
            update["env_file"] = [_expand(p, project_dir) for p in service.env_file]
        services[name] = service.model_copy(update=update) if update else service
    return project.model_copy(update={"services": services})
