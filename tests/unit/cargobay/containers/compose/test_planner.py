"""The sans-IO ``up`` planner: what is created, recreated, started, removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.loader import load_project
from cargobay.containers.compose.model import ComposeProject
from cargobay.containers.compose.planner import (
    ObservedContainer,
    layers,
    observe_containers,
    plan_up,
)
from cargobay.errors import ComposeError

TEXT = """
services:
  db: {image: x, volumes: ["data:/d"]}
  cache: {image: x}
  web: {image: x, depends_on: [db, cache], networks: [front, default], deploy: {replicas: 2}}
  proxy: {image: x, depends_on: {web: {condition: service_healthy}}, networks: [front]}
networks: {front: {}, outside: {external: true}}
volumes: {data: {}}
"""


@pytest.fixture
def project(tmp_path: Path) -> ComposeProject:
    (tmp_path / "compose.yaml").write_text(TEXT)
    return load_project(working_dir=tmp_path, env={}, project_name="p").project


HASHES = {"db": "h-db", "cache": "h-cache", "web": "h-web", "proxy": "h-proxy"}


def c(service: str, number: int, h: str | None = None, running: bool = True) -> ObservedContainer:
    return ObservedContainer(
        id=f"{service}{number}" * 4,
        name=f"p_{service}_{number}",
        service=service,
        number=number,
        config_hash=HASHES.get(service) if h is None else h,
        running=running,
    )


def test_layers(project: ComposeProject) -> None:
    assert layers(project) == [["cache", "db"], ["web"], ["proxy"]]
    assert layers(project, ["web"]) == [["cache", "db"], ["web"]]
    with pytest.raises(ComposeError, match="no such service"):
        layers(project, ["nope"])


def test_fresh_project(project: ComposeProject) -> None:
    plan = plan_up(project, hashes=HASHES, containers=[], existing_networks=[],
                   existing_volumes=[])  # fmt: skip
    assert [n.name for n in plan.networks] == ["p_default", "p_front"]
    assert [v.name for v in plan.volumes] == ["p_data"]
    assert {name: p.action for name, p in plan.services.items()} == dict.fromkeys(
        ["cache", "db", "web", "proxy"], "create"
    )
    assert plan.services["web"].create == [1, 2]
    assert list(plan.services) == ["cache", "db", "web", "proxy"]
    assert plan.changes


def test_up_to_date_project_changes_nothing(project: ComposeProject) -> None:
    running = [c("db", 1), c("cache", 1), c("web", 1), c("web", 2), c("proxy", 1)]
    plan = plan_up(
        project,
        hashes=HASHES,
        containers=running,
        existing_networks=["p_default", "p_front"],
        existing_volumes=["p_data"],
    )
    assert not plan.changes
    assert {p.action for p in plan.services.values()} == {"noop"}


def test_changed_hash_recreates_only_that_service(project: ComposeProject) -> None:
    running = [c("db", 1, "old"), c("cache", 1), c("web", 1), c("web", 2), c("proxy", 1)]
    plan = plan_up(
        project,
        hashes=HASHES,
        containers=running,
        existing_networks=["p_default", "p_front"],
        existing_volumes=["p_data"],
    )
    assert {n: p.action for n, p in plan.services.items()} == {
        "cache": "noop", "db": "recreate", "web": "noop", "proxy": "noop"}  # fmt: skip
    assert [x.name for x in plan.services["db"].recreate] == ["p_db_1"]


def test_stopped_started_scaled(project: ComposeProject) -> None:
    containers = [c("db", 1, running=False), c("cache", 1), c("web", 1), c("web", 2),
                  c("web", 3), c("proxy", 1)]  # fmt: skip
    plan = plan_up(
        project,
        hashes=HASHES,
        containers=containers,
        existing_networks=["p_default", "p_front"],
        existing_volumes=["p_data"],
    )
    assert plan.services["db"].action == "start"
    assert [x.name for x in plan.services["db"].start] == ["p_db_1"]
    web = plan.services["web"]
    assert (web.action, [x.number for x in web.remove]) == ("scale", [3])
    containers = [c("db", 1), c("cache", 1), c("web", 2), c("proxy", 1)]
    plan = plan_up(
        project,
        hashes=HASHES,
        containers=containers,
        existing_networks=["p_default", "p_front"],
        existing_volumes=["p_data"],
    )
    assert plan.services["web"].create == [1]


def test_force_and_no_recreate(project: ComposeProject) -> None:
    containers = [c("db", 1, "old"), c("cache", 1), c("web", 1), c("web", 2), c("proxy", 1)]
    kwargs = {"hashes": HASHES, "containers": containers, "existing_networks": [],
              "existing_volumes": []}  # fmt: skip
    forced = plan_up(project, force_recreate=True, **kwargs)  # type: ignore[arg-type]
    assert {p.action for p in forced.services.values()} == {"recreate"}
    kept = plan_up(project, no_recreate=True, **kwargs)  # type: ignore[arg-type]
    assert kept.services["db"].action == "noop"
    with pytest.raises(ComposeError):
        plan_up(project, force_recreate=True, no_recreate=True, **kwargs)  # type: ignore[arg-type]


def test_orphans(project: ComposeProject) -> None:
    containers = [c("old", 1)]
    plan = plan_up(project, hashes=HASHES, containers=containers, existing_networks=[],
                   existing_volumes=[])  # fmt: skip
    assert [o.name for o in plan.orphans] == ["p_old_1"]
    assert not plan.remove_orphans


def test_external_network_must_exist(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a: {image: x, networks: [ext]}\nnetworks: {ext: {external: true}}\n"
    )
    project = load_project(working_dir=tmp_path, env={}, project_name="p").project
    with pytest.raises(ComposeError, match="external"):
        plan_up(project, hashes={"a": "h"}, containers=[], existing_networks=[],
                existing_volumes=[])  # fmt: skip
    plan = plan_up(project, hashes={"a": "h"}, containers=[], existing_networks=["ext"],
                   existing_volumes=[])  # fmt: skip
    assert plan.networks == []


def test_observe_containers_reads_labels() -> None:
    listing = [
        {"Id": "a" * 64, "Names": ["/p_web_2"], "State": "running", "ImageID": "sha256:1",
         "Labels": {L.PROJECT: "p", L.SERVICE: "web", L.CONTAINER_NUMBER: "2",
                    L.CONFIG_HASH: "h", L.ONEOFF: "False"}},
        {"Id": "b" * 64, "Names": ["/p_web_run_1"], "State": "exited",
         "Labels": {L.PROJECT: "p", L.SERVICE: "web", L.ONEOFF: "True"}},
        {"Id": "c" * 64, "Names": ["/stray"], "State": "exited", "Labels": {L.PROJECT: "p"}},
    ]  # fmt: skip
    [seen] = observe_containers(listing)
    assert (seen.name, seen.service, seen.number, seen.config_hash, seen.running) == (
        "p_web_2", "web", 2, "h", True)  # fmt: skip


def test_implicit_dependencies_order_the_layers(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  app: {image: x, ipc: 'service:shm', network_mode: 'service:net'}\n"
        "  shm: {image: x, ipc: shareable}\n"
        "  net: {image: x, links: [shm]}\n"
    )
    project = load_project(working_dir=tmp_path, env={}, project_name="p").project
    assert project.services["app"].implicit_dependencies == ["net", "shm"]
    assert layers(project) == [["shm"], ["net"], ["app"]]
    (tmp_path / "compose.yaml").write_text("services:\n  app: {image: x, pid: 'service:gone'}\n")
    with pytest.raises(ComposeError, match="undefined service 'gone'"):
        load_project(working_dir=tmp_path, env={})
