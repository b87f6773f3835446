"""Project-wide checks of a loaded Compose project (every file merged, extends resolved).

Structural problems (unknown keys, wrong types) are found per file by the model; these
need the whole project: a service without an image or a build, undefined networks,
volumes, secrets, configs and dependencies, dependencies on services whose profile is off,
``container_name`` with several replicas, missing env files, dependency cycles (explicit
``depends_on`` and the implicit ones of ``links`` and ``service:`` modes).  Every error
names the file, the service and the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cargobay.containers.compose.model import ComposeProject
from cargobay.errors import ComposeFileError

__all__ = ["find_cycle", "validate_project"]


def _error(
    file: str, message: str, service: str | None = None, key: str | None = None
) -> ComposeFileError:
    return ComposeFileError(message, file=file, service=service, key=key)


def validate_project(
    project: ComposeProject, service_files: Mapping[str, str], disabled: Sequence[str] = ()
) -> None:
    """Project-wide checks that need every file merged (see the module docstring)."""
    main_file = project.config_files[0] if project.config_files else project.working_dir
    for name, service in project.services.items():
        file = service_files.get(name, main_file)
        if service.image is None and service.build is None:
            raise _error(file, "needs an 'image' or a 'build' section", name, "image")
        if service.network_mode is None:
            for net in service.networks:
                if net != "default" and net not in project.networks:
                    raise _error(
                        file, f"network {net!r} is not defined under the top-level 'networks'",
                        name, f"networks.{net}",
                    )  # fmt: skip
        elif service.networks:
            raise _error(file, "'network_mode' and 'networks' cannot both be set", name,
                         "network_mode")  # fmt: skip
        for index, mount in enumerate(service.volumes):
            if mount.type == "volume" and mount.source and mount.source not in project.volumes:
                raise _error(
                    file,
                    f"named volume {mount.source!r} is not defined under the top-level 'volumes'",
                    name,
                    f"volumes[{index}]",
                )
        for dep in service.depends_on:
            if dep in disabled:
                raise _error(
                    file,
                    f"depends on {dep!r}, whose profiles are not enabled",
                    name,
                    f"depends_on.{dep}",
                )
            if dep not in project.services:
                raise _error(file, f"depends on undefined service {dep!r}", name,
                             f"depends_on.{dep}")  # fmt: skip
        if service.container_name and service.replicas > 1:
            raise _error(
                file,
                f"has container_name {service.container_name!r} but {service.replicas} "
                "replicas; container names are unique",
                name,
                "container_name",
            )
        for section, refs, defined_all in (
            ("secrets", service.secrets, project.secrets),
            ("configs", service.configs, project.configs),
        ):
            kind = section[:-1]
            for index, ref in enumerate(refs):
                where = f"{section}[{index}]"
                defined = defined_all.get(ref.source)
                if defined is None:
                    raise _error(file, f"{kind} {ref.source!r} is not defined under the "
                                 f"top-level '{section}'", name, where)  # fmt: skip
                if defined.environment is not None:
                    raise _error(file, f"{kind} {ref.source!r} comes from an environment "
                                 "variable, which cargobay compose does not support yet; use "
                                 "'file:'", name, where)  # fmt: skip
                if not defined.external and not (defined.file and Path(defined.file).is_file()):
                    raise _error(file, f"{kind} {ref.source!r}: file {defined.file} does not "
                                 "exist", name, where)  # fmt: skip
        for env_path in service.env_file:
            if not Path(env_path).is_file():
                raise _error(file, f"env file {env_path} does not exist", name, "env_file")
    for name, service in project.services.items():
        for dep in service.implicit_dependencies:
            if dep not in project.services:
                raise _error(
                    service_files.get(name, main_file),
                    f"refers to undefined service {dep!r} (links, network_mode, pid or ipc)",
                    name,
                )
    cycle = find_cycle({n: s.all_dependencies for n, s in project.services.items()})
    if cycle:
        first = cycle[0]
        raise _error(
            service_files.get(first, main_file),
            "dependency cycle: " + " -> ".join(cycle),
            first,
            f"depends_on.{cycle[1]}",
        )


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None
