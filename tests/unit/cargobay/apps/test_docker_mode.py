"""The MaiBot stack's compose file, generated from an instance."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cargobay.apps import docker_mode
from cargobay.apps.models import DeploymentTask, DeployMode, Instance, StackConfig
from cargobay.apps.tasks import TaskManager, TaskReporter
from cargobay.errors import AppConflict, AppInputError


def _instance(**stack: Any) -> Instance:
    return Instance(name="bot1", deploy_mode=DeployMode.DOCKER, stack=StackConfig(**stack))


def test_document_follows_maibots_compose_file() -> None:
    doc = docker_mode.compose_document(_instance())
    services = doc["services"]
    assert list(services) == ["core", "napcat", "adapters"]
    assert services["core"]["ports"] == ["0.0.0.0:18001:8001"]
    assert "./docker-config/mmc:/MaiMBot/config" in services["core"]["volumes"]
    assert "WEBUI_HOST=0.0.0.0" in services["core"]["environment"]
    assert services["napcat"]["ports"] == ["0.0.0.0:6099:6099"]
    assert "NAPCAT_UID=1000" in services["napcat"]["environment"]
    assert services["napcat"]["image"] == "mlikiowa/napcat-docker:latest"
    assert "ports" not in services["adapters"]  # upstream leaves 8095 unpublished
    assert (
        "./docker-config/adapters/config.toml:/adapters/config.toml"
        in (services["adapters"]["volumes"])
    )
    assert all(s["networks"] == ["maim_bot"] for s in services.values())
    assert all(s["restart"] == "always" for s in services.values())
    assert doc["networks"]["maim_bot"]["driver"] == "bridge"


def test_stack_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="core_image"):
        StackConfig(core_image="UPPER/Case:bad tag")
    with pytest.raises(ValidationError, match="bind_address"):
        StackConfig(bind_address="nope")


def test_sqlite_web_images_and_ports_from_the_config() -> None:
    inst = _instance(
        sqlite_web=True,
        core_image="mirror.example/maibot:0.9",
        bind_address="127.0.0.1",
        webui_port=28001,
        adapter_port=28095,
    )
    services = docker_mode.compose_document(inst)["services"]
    assert services["sqlite-web"]["ports"] == ["127.0.0.1:8120:8080"]
    assert services["sqlite-web"]["environment"] == ["SQLITE_DATABASE=MaiMBot/MaiBot.db"]
    assert services["core"]["image"] == "mirror.example/maibot:0.9"
    assert services["core"]["ports"] == ["127.0.0.1:28001:8001"]
    assert services["adapters"]["ports"] == ["127.0.0.1:28095:8095"]


def test_write_compose_is_loaded_and_one_network_per_instance(tmp_path: Path) -> None:
    inst = _instance()
    created = docker_mode.prepare_directories(tmp_path)
    assert (tmp_path / docker_mode.ADAPTER_CONFIG).is_file()
    assert tmp_path / "data" / "qq" in created
    path, loaded = docker_mode.write_compose(inst, tmp_path)
    assert path == tmp_path / "docker-compose.yml"
    assert loaded.project.name == "maibot-bot1"
    net = loaded.project.network_name("maim_bot")
    assert net == docker_mode.network_name(inst) == "maibot-bot1_maim_bot"
    other = Instance(name="bot2", deploy_mode=DeployMode.DOCKER)
    assert docker_mode.network_name(other) != net
    # a second prepare keeps what is there (user edits survive)
    (tmp_path / docker_mode.ADAPTER_CONFIG).write_text("# mine\n")
    assert docker_mode.prepare_directories(tmp_path) == []
    assert (tmp_path / docker_mode.ADAPTER_CONFIG).read_text() == "# mine\n"


def test_a_bad_config_keeps_the_previous_file(tmp_path: Path) -> None:
    inst = _instance()
    path, _ = docker_mode.write_compose(inst, tmp_path)
    before = path.read_text()
    # a config that slipped past validation (model_construct) is caught by the loader
    stack = StackConfig.model_construct(**{**StackConfig().model_dump(), "webui_port": 99999})
    bad = inst.model_copy(update={"stack": stack})
    with pytest.raises(AppInputError, match=r"docker-compose.yml: service 'core': key 'ports'"):
        docker_mode.write_compose(bad, tmp_path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]


async def test_task_events_can_be_followed_late() -> None:
    tasks = TaskManager()
    gate = asyncio.Event()

    async def work(report: TaskReporter) -> str:
        report.step("one")
        report.log("hello")
        await gate.wait()
        report.step("two")
        report.progress(0.5)
        return "finished"

    task = tasks.start(DeploymentTask(instance_id="i", instance_name="n"), ["one", "two"], work)
    with pytest.raises(AppConflict, match="already has a deploy task"):
        tasks.start(DeploymentTask(instance_id="i", instance_name="n"), ["x"], work)
    await asyncio.sleep(0)
    follower = tasks.follow(task.id)
    first = [await anext(follower), await anext(follower)]
    assert [e.type for e in first] == ["step", "log"]
    gate.set()
    rest = [e async for e in follower]
    assert [e.type for e in rest] == ["step", "progress", "done"]
    assert rest[1].percent == 75.0
    assert rest[-1].message == "finished"
    assert (await tasks.wait(task.id)).state == "succeeded"
    replay = [e.seq async for e in tasks.follow(task.id, since=3)]
    assert replay == [3, 4]


async def test_a_failing_task_ends_with_an_error_event() -> None:
    tasks = TaskManager()

    async def work(report: TaskReporter) -> str:
        report.step("clone")
        raise AppConflict("nope")

    task = tasks.start(DeploymentTask(instance_id="i", instance_name="n"), ["clone"], work)
    events = [e async for e in tasks.follow(task.id)]
    assert events[-1].type == "error"
    assert events[-1].message == "nope"
    assert tasks.get(task.id).error == "nope"
