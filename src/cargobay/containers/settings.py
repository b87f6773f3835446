"""Container settings: which engine, registry mirrors, registries reached over plain HTTP.

Read from ``containers.toml`` in CargoBay's configuration directory
(``$CARGOBAY_HOME/config``, else ``$XDG_CONFIG_HOME/cargobay``, else
``~/.config/cargobay``); ``CARGOBAY_CONTAINERS_CONFIG`` names another file.  A missing
file means defaults.  Example::

    docker_host = "unix:///run/user/1000/docker.sock"   # else DOCKER_HOST, contexts, ...

    [registry]
    insecure = ["registry.lan:5000"]          # plain HTTP for update checks
    [registry.mirrors]
    "docker.io" = ["mirror.gcr.io", "docker.m.daocloud.io"]

A mirror is tried in order before the registry itself: ``busybox:1.36`` is pulled as
``mirror.gcr.io/library/busybox:1.36`` and tagged back as ``busybox:1.36`` (what
Docker's ``registry-mirrors`` does for Docker Hub, for any registry and without
touching ``daemon.json``).  Loopback registries are always plain HTTP, as dockerd
treats them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cargobay.containers.reference import ImageReference, parse_reference
from cargobay.containers.registry import is_loopback
from cargobay.errors import InvalidInput

__all__ = ["ContainerSettings", "RegistrySettings", "config_path", "load_settings"]


class RegistrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mirrors: dict[str, list[str]] = Field(default_factory=dict)
    insecure: list[str] = Field(default_factory=list)

    @field_validator("mirrors")
    @classmethod
    def _domains(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        normalized: dict[str, list[str]] = {}
        for registry, mirrors in value.items():
            key = (
                "docker.io" if registry in ("index.docker.io", "registry-1.docker.io") else registry
            )
            normalized[key] = [
                m.removeprefix("https://").removeprefix("http://").rstrip("/") for m in mirrors
            ]
        return normalized

    def mirrors_for(self, ref: ImageReference) -> list[ImageReference]:
        """``ref`` rewritten onto each mirror of its registry, in order."""
        out = []
        for mirror in self.mirrors.get(ref.domain, []):
            domain, _, prefix = mirror.partition("/")
            path = f"{prefix}/{ref.path}" if prefix else ref.path
            out.append(parse_reference(str(ImageReference(domain, path, ref.tag, ref.digest))))
        return out

    def is_insecure(self, domain: str) -> bool:
        """Plain HTTP for this registry: configured, ``localhost`` or a loopback address."""
        return domain in self.insecure or is_loopback(domain)


class ContainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docker_host: str | None = None
    registry: RegistrySettings = Field(default_factory=RegistrySettings)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("CARGOBAY_CONTAINERS_CONFIG")
    if explicit:
        return Path(explicit)
    home = env.get("CARGOBAY_HOME")
    if home:
        return Path(home) / "config" / "containers.toml"
    xdg = env.get("XDG_CONFIG_HOME")
    base = (
        Path(xdg)
        if xdg and os.path.isabs(xdg)
        else Path(env.get("HOME") or Path.home()) / ".config"
    )
    return base / "cargobay" / "containers.toml"


def load_settings(path: Path | None = None) -> ContainerSettings:
    """The settings in ``path`` (default :func:`config_path`); defaults when absent."""
    path = config_path() if path is None else path
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return ContainerSettings()
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InvalidInput(f"{path}: cannot read the container settings: {err}") from err
    try:
        return ContainerSettings.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise InvalidInput(f"{path}: {where}: {first.get('msg')}") from err
