"""``extends``: a service built on another one, in the same file or another file.

    services:
      web:
        extends: {file: common.yml, service: base}     # or `extends: base`
        ports: ["8080:80"]

The base service is resolved first (it may extend another; a cycle is an error), its
relative paths (build context, env files, bind mounts) are made absolute against its own
file's directory, then the extending service is merged over it with the usual merge
rules.  As in docker-compose 1.29, a base may not have ``links``, ``volumes_from`` or
``depends_on`` (they name services of its own file).

Two flavours: ``resolve_extends`` for the engine (our merge), ``resolve_extends_129`` for
the config hash (1.29 processes the base, then merges with its own rules).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cargobay.errors import ComposeFileError

__all__ = ["FileLoader", "resolve_extends", "resolve_extends_129"]

FileLoader = Callable[[Path], Mapping[str, Mapping[str, Any]]]
"""Reads another compose file's services (interpolated)."""

_FORBIDDEN = ("links", "volumes_from", "depends_on")


def _spec(body: Mapping[str, Any], file: Path, name: str) -> dict[str, Any]:
    spec = body["extends"]
    if isinstance(spec, str):
        spec = {"service": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("service"), str):
        raise ComposeFileError(
            "'extends' is a service name or {service: NAME, file: PATH}",
            file=str(file), service=name, key="extends",
        )  # fmt: skip
    unknown = set(spec) - {"service", "file"}
    if unknown:
        raise ComposeFileError(
            f"unknown key {sorted(unknown)[0]!r} in 'extends'",
            file=str(file), service=name, key="extends",
        )  # fmt: skip
    return spec


def _base(
    name: str,
    body: Mapping[str, Any],
    file: Path,
    base_dir: Path,
    services: Mapping[str, Mapping[str, Any]],
    load_file: FileLoader,
    seen: tuple[tuple[str, str], ...],
) -> tuple[str, Path, Mapping[str, Mapping[str, Any]], dict[str, Any], tuple[tuple[str, str], ...]]:
    spec = _spec(body, file, name)
    target = Path(os.path.abspath(base_dir / os.path.expanduser(spec["file"]))) if (
        "file" in spec) else file  # fmt: skip
    if target == file:
        pool = services
    else:
        if not target.is_file():
            raise ComposeFileError(
                f"cannot read the extended file {target}: no such file",
                file=str(file), service=name, key="extends",
            )  # fmt: skip
        pool = load_file(target)  # its own errors name that file
    base_name = spec["service"]
    if base_name not in pool:
        raise ComposeFileError(
            f"extends service {base_name!r}, which {target} does not define",
            file=str(file), service=name, key="extends",
        )  # fmt: skip
    key = (str(target), base_name)
    if key in seen:
        chain = " -> ".join(f"{s} ({f})" for f, s in (*seen, key))
        raise ComposeFileError(f"circular extends: {chain}", file=str(file), service=name,
                               key="extends")  # fmt: skip
    base = copy.deepcopy(dict(pool[base_name]))
    return base_name, target, pool, base, (*seen, key)


def _check_base(base: Mapping[str, Any], file: Path, name: str, base_name: str) -> None:
    for key in _FORBIDDEN:
        if key in base:
            raise ComposeFileError(
                f"cannot extend service {base_name!r}: services with {key!r} cannot be extended",
                file=str(file), service=name, key="extends",
            )  # fmt: skip
    mode = str(base.get("network_mode", ""))
    if mode.startswith("service:"):
        raise ComposeFileError(
            f"cannot extend service {base_name!r}: it uses network_mode {mode!r}",
            file=str(file), service=name, key="extends",
        )  # fmt: skip


def _absolute(path: str, directory: Path) -> str:
    return os.path.abspath(os.path.join(directory, os.path.expanduser(path)))


def _rebase(base: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The base's relative paths, made absolute against its own file's directory."""
    build = base.get("build")
    if isinstance(build, str) and "://" not in build:
        base["build"] = _absolute(build, directory)
    elif (
        isinstance(build, dict)
        and isinstance(build.get("context"), str)
        and "://" not in build["context"]
    ):
        build["context"] = _absolute(build["context"], directory)
    if "env_file" in base:
        files = [base["env_file"]] if isinstance(base["env_file"], str) else base["env_file"]
        base["env_file"] = [_absolute(str(f), directory) for f in files]
    volumes = []
    for volume in base.get("volumes", []):
        if isinstance(volume, dict):
            source = volume.get("source")
            if volume.get("type") == "bind" and isinstance(source, str):
                volume = {**volume, "source": _absolute(source, directory)}
        elif isinstance(volume, str) and volume.startswith((".", "~")):
            source, sep, rest = volume.partition(":")
            volume = _absolute(source, directory) + sep + rest
        volumes.append(volume)
    if "volumes" in base:
        base["volumes"] = volumes
    return base


def resolve_extends(
    name: str,
    body: Mapping[str, Any],
    *,
    file: Path,
    project_dir: Path,
    services: Mapping[str, Mapping[str, Any]],
    load_file: FileLoader,
    merge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    seen: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """``body`` with its ``extends`` resolved (the engine's view)."""
    if "extends" not in body:
        return dict(body)
    base_name, target, pool, base, seen = _base(
        name, body, file, file.parent if seen else project_dir, services, load_file, seen
    )
    base = resolve_extends(
        base_name, base, file=target, project_dir=project_dir, services=pool,
        load_file=load_file, merge=merge, seen=seen,
    )  # fmt: skip
    _check_base(base, file, name, base_name)
    base = _rebase(base, target.parent)
    child = {k: v for k, v in body.items() if k != "extends"}
    return merge(base, child)


def resolve_extends_129(
    name: str,
    body: Mapping[str, Any],
    *,
    file: Path,
    working_dir: Path,
    services: Mapping[str, Mapping[str, Any]],
    load_file: FileLoader,
    seen: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """``body`` as docker-compose 1.29 resolves its ``extends`` (for the config hash):
    the base is resolved, processed (``process_service``) in its file's directory, then
    1.29's merge puts ``body`` over it (dropping the ``extends`` key)."""
    from cargobay.containers.compose.hashing import convert, process_service_129
    from cargobay.containers.compose.merge129 import merge_service

    if "extends" not in body:
        return dict(body)
    base_name, target, pool, base, seen = _base(
        name, body, file, working_dir, services, load_file, seen
    )
    base_dir = target.parent
    base = resolve_extends_129(
        base_name, convert(base), file=target, working_dir=base_dir, services=pool,
        load_file=load_file, seen=seen,
    )  # fmt: skip
    processed = process_service_129(base, str(base_dir))
    _check_base(processed, file, name, base_name)
    return merge_service(processed, body)
