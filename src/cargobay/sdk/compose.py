"""SDK calls for the daemon's compose endpoints (``/v1/compose``).

A wrapper around an existing client, like ``EngineClient``::

    with CargoBayClient() as client:
        compose = ComposeClient(client, ProjectSpec.here(files=["compose.yaml"]))
        for event in compose.up():
            ...                       # "plan", "progress", "warning" events, then "done"
        compose.ps()
        compose.down(volumes=True)

``ProjectSpec`` says which project, the way the compose command line does: the files,
``-p``, ``--env-file``, profiles, the working directory and the environment used for
interpolation (by default this process's).  Streams raise the typed error an ``error``
event reports (a ``ComposeError`` naming the service, a ``ComposeFileError`` naming the
file, service and key).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, _Call

__all__ = ["AsyncComposeClient", "ComposeClient", "ProjectSpec"]

PREFIX = "/v1/compose"


@dataclass(frozen=True)
class ProjectSpec:
    files: Sequence[str] = ()
    project_name: str | None = None
    working_dir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    env_file: str | None = None
    profiles: Sequence[str] = ()

    @classmethod
    def here(
        cls,
        files: Sequence[str | Path] = (),
        *,
        project_name: str | None = None,
        env_file: str | Path | None = None,
        profiles: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        working_dir: str | Path | None = None,
    ) -> ProjectSpec:
        """A project as seen from the current directory and environment."""
        base = Path(working_dir) if working_dir is not None else Path.cwd()
        return cls(
            files=[str((base / f).absolute()) for f in files],
            project_name=project_name,
            working_dir=str(base.absolute()),
            env=dict(os.environ if env is None else env),
            env_file=str((base / env_file).absolute()) if env_file is not None else None,
            profiles=list(profiles),
        )

    def body(self, **more: Any) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "project_name": self.project_name,
            "working_dir": self.working_dir,
            "env": dict(self.env),
            "env_file": self.env_file,
            "profiles": list(self.profiles),
            **more,
        }


class _Calls:
    @staticmethod
    def config(spec: ProjectSpec) -> _Call:
        return _Call("POST", f"{PREFIX}/config", json=spec.body())

    @staticmethod
    def up(spec: ProjectSpec, **options: Any) -> _Call:
        return _Call("POST", f"{PREFIX}/up", json=spec.body(**options), timeout=None)

    @staticmethod
    def down(spec: ProjectSpec, **options: Any) -> _Call:
        return _Call("POST", f"{PREFIX}/down", json=spec.body(**options), timeout=None)

    @staticmethod
    def verb(spec: ProjectSpec, verb: str, **options: Any) -> _Call:
        return _Call("POST", f"{PREFIX}/{verb}", json=spec.body(**options), timeout=None)

    @staticmethod
    def ps(spec: ProjectSpec, services: Sequence[str]) -> _Call:
        return _Call("POST", f"{PREFIX}/ps", json=spec.body(services=list(services)))

    @staticmethod
    def logs(spec: ProjectSpec, **options: Any) -> _Call:
        return _Call("POST", f"{PREFIX}/logs", json=spec.body(**options), timeout=None)

    @staticmethod
    def export(spec: ProjectSpec, fmt: str, namespace: str | None, storage: str) -> _Call:
        body = spec.body(format=fmt, namespace=namespace, storage=storage)
        return _Call("POST", f"{PREFIX}/export", json=body)

    @staticmethod
    def deploy(spec: ProjectSpec) -> _Call:
        return _Call("POST", f"{PREFIX}/deploy", json=spec.body(target="swarm"), timeout=None)


class ComposeClient:
    """Blocking compose calls over a :class:`CargoBayClient`."""

    def __init__(self, client: CargoBayClient, project: ProjectSpec) -> None:
        self.client = client
        self.project = project

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client._request(_Calls.config(self.project))
        return result

    def up(
        self,
        services: Sequence[str] = (),
        *,
        build: bool = False,
        force_recreate: bool = False,
        no_recreate: bool = False,
        remove_orphans: bool = False,
        wait_timeout: float = 300.0,
        wait: bool = False,
    ) -> Iterator[dict[str, Any]]:
        return self.client._events(
            _Calls.up(self.project, services=list(services), build=build,
                      force_recreate=force_recreate, no_recreate=no_recreate,
                      remove_orphans=remove_orphans, wait_timeout=wait_timeout, wait=wait)
        )  # fmt: skip

    def down(
        self, *, volumes: bool = False, remove_orphans: bool = False, timeout: int | None = None
    ) -> Iterator[dict[str, Any]]:
        return self.client._events(
            _Calls.down(self.project, volumes=volumes, remove_orphans=remove_orphans,
                        timeout=timeout)
        )  # fmt: skip

    def stop(
        self, services: Sequence[str] = (), *, timeout: int | None = None
    ) -> Iterator[dict[str, Any]]:
        return self.client._events(
            _Calls.verb(self.project, "stop", services=list(services), timeout=timeout)
        )

    def start(self, services: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        return self.client._events(_Calls.verb(self.project, "start", services=list(services)))

    def restart(
        self, services: Sequence[str] = (), *, timeout: int | None = None
    ) -> Iterator[dict[str, Any]]:
        return self.client._events(
            _Calls.verb(self.project, "restart", services=list(services), timeout=timeout)
        )

    def ps(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client._request(_Calls.ps(self.project, services))
        return result

    def logs(
        self,
        services: Sequence[str] = (),
        *,
        follow: bool = False,
        tail: int | None = None,
        timestamps: bool = False,
        grep: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        return self.client._events(
            _Calls.logs(self.project, services=list(services), follow=follow, tail=tail,
                        timestamps=timestamps, grep=grep)
        )  # fmt: skip

    def export(
        self,
        fmt: Literal["swarm", "kubernetes"],
        *,
        namespace: str | None = None,
        storage: str = "1Gi",
    ) -> dict[str, Any]:
        """``{"format", "yaml", "warnings"}``."""
        result: dict[str, Any] = self.client._request(
            _Calls.export(self.project, fmt, namespace, storage)
        )
        return result

    def deploy(self) -> Iterator[dict[str, Any]]:
        return self.client._events(_Calls.deploy(self.project))


class AsyncComposeClient:
    """The same calls over an :class:`AsyncCargoBayClient`."""

    def __init__(self, client: AsyncCargoBayClient, project: ProjectSpec) -> None:
        self.client = client
        self.project = project

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.client._request(_Calls.config(self.project))
        return result

    def up(
        self,
        services: Sequence[str] = (),
        *,
        build: bool = False,
        force_recreate: bool = False,
        no_recreate: bool = False,
        remove_orphans: bool = False,
        wait_timeout: float = 300.0,
        wait: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(
            _Calls.up(self.project, services=list(services), build=build,
                      force_recreate=force_recreate, no_recreate=no_recreate,
                      remove_orphans=remove_orphans, wait_timeout=wait_timeout, wait=wait)
        )  # fmt: skip

    def down(
        self, *, volumes: bool = False, remove_orphans: bool = False, timeout: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(
            _Calls.down(self.project, volumes=volumes, remove_orphans=remove_orphans,
                        timeout=timeout)
        )  # fmt: skip

    def stop(
        self, services: Sequence[str] = (), *, timeout: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(
            _Calls.verb(self.project, "stop", services=list(services), timeout=timeout)
        )

    def start(self, services: Sequence[str] = ()) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(_Calls.verb(self.project, "start", services=list(services)))

    def restart(
        self, services: Sequence[str] = (), *, timeout: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(
            _Calls.verb(self.project, "restart", services=list(services), timeout=timeout)
        )

    async def ps(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.client._request(_Calls.ps(self.project, services))
        return result

    def logs(
        self,
        services: Sequence[str] = (),
        *,
        follow: bool = False,
        tail: int | None = None,
        timestamps: bool = False,
        grep: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(
            _Calls.logs(self.project, services=list(services), follow=follow, tail=tail,
                        timestamps=timestamps, grep=grep)
        )  # fmt: skip

    async def export(
        self,
        fmt: Literal["swarm", "kubernetes"],
        *,
        namespace: str | None = None,
        storage: str = "1Gi",
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.client._request(
            _Calls.export(self.project, fmt, namespace, storage)
        )
        return result

    def deploy(self) -> AsyncIterator[dict[str, Any]]:
        return self.client._events(_Calls.deploy(self.project))
