"""Docker mode against a real dockerd: the MaiBot stack (stand-in images) deployed from an
instance through the compose engine, then driven: status, logs, stats, stop/start, a
failed deploy that cleans up, removal.  One stack for the module (tests run in order)."""

from __future__ import annotations

import asyncio
import http.client
import io
import os
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargobay.apps.models import DeployMode, InstanceCreate, InstanceUpdate, StackConfig
from cargobay.apps.service import AppService
from cargobay.containers.engine import DockerEngine
from cargobay.errors import AppConfigError, AppConflict, AppNotFound, TomlSyntaxError
from cargobay.store.sqlite import Store
from tests.integration.apps.conftest import free_port
from tests.integration.containers.conftest import LocalRegistry

pytestmark = pytest.mark.usefixtures("maibot_standins")


def _get(port: int, wait: float = 15.0) -> str:
    """The stand-in's page; a container that just (re)started gets ``wait`` seconds to
    listen."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                return reply.read().decode()
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"webui_port": free_port(), "napcat_port": free_port(),
            "adapter_port": free_port(), "sqlite_web_port": free_port()}  # fmt: skip


@pytest.fixture
def service(apps_home: Path, docker_engine: str) -> Iterator[AppService]:
    store = Store.open(apps_home / "state.db")
    yield AppService(store, apps_home / "apps", engine_url=docker_engine)
    store.close()


def _context_with_label(base: str, value: str) -> bytes:
    data = f"FROM {base}\nLABEL org.cargobay.test.newer={value}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _stack(standins: dict[str, str], ports: dict[str, int]) -> StackConfig:
    return StackConfig(**standins, **ports, sqlite_web=True, bind_address="127.0.0.1")


async def test_deploy_the_stack(
    service: AppService, maibot_standins: dict[str, str], ports: dict[str, int]
) -> None:
    body = InstanceCreate(name="it-bot", deploy_mode=DeployMode.DOCKER,
                          stack=_stack(maibot_standins, ports))  # fmt: skip
    service.create(body)
    with pytest.raises(AppConflict, match="'it-bot'"):
        service.create(body)
    task = service.deploy("it-bot")
    events = [e async for e in service.tasks.follow(task.id)]
    assert events[-1].type == "done", [e.message for e in events]
    assert [e.step for e in events if e.type == "step"] == [
        "prepare", "compose file", "images", "containers", "verify"]  # fmt: skip
    assert events[-1].percent == 100.0

    instance = service.get("it-bot")
    assert instance.status == "running"
    assert len(instance.container_ids) == 4
    assert instance.docker_network == "maibot-it-bot_maim_bot"
    assert await asyncio.to_thread(os.path.isfile, str(instance.docker_compose_path))
    # each stand-in answers on its real port, published where the instance said
    core = _get(ports["webui_port"])
    assert core.startswith("role=core")
    assert 'nickname = "MaiMai"' in core  # the mounted bot_config.toml
    assert _get(ports["napcat_port"]).startswith("role=napcat")
    assert "[maibot_server]" in _get(ports["adapter_port"])
    assert _get(ports["sqlite_web_port"]).startswith("role=sqlite-web")


async def test_status_logs_stats(service: AppService) -> None:
    status = await service.status("it-bot")
    containers = status["containers"]
    assert sorted(c.service for c in containers) == ["adapters", "core", "napcat", "sqlite-web"]
    assert all(c.state == "running" for c in containers)
    core = next(c for c in containers if c.service == "core")
    assert any("->8001/tcp" in p for p in core.ports)

    lines = [e async for e in await service.logs("it-bot", services=["core"])]
    assert any("stand-in core listening on 8001" in e["line"] for e in lines)

    stats = await service.stats("it-bot")
    assert len(stats) == 4
    assert all(s.memory_usage > 0 for s in stats)

    images = await service.images("it-bot")
    assert all(i.present and i.image_id for i in images)
    assert {f"{i.repository}:{i.tag}" for i in images} >= {"cargobay-test/maibot-standin:1"}


async def test_stop_start_restart(service: AppService, ports: dict[str, int]) -> None:
    stopped = await service.stop("it-bot")
    assert stopped.status == "stopped"
    started = await service.start("it-bot", services=["core"])
    assert started.status == "partial"
    restarted = await service.start("it-bot")
    assert restarted.status == "running"
    assert (await service.restart("it-bot", services=["napcat"])).status == "running"
    assert _get(ports["napcat_port"]).startswith("role=napcat")


async def test_a_failed_redeploy_keeps_the_running_stack(
    service: AppService, maibot_standins: dict[str, str], ports: dict[str, int]
) -> None:
    instance = service.get("it-bot")
    compose_file = Path(str(instance.docker_compose_path))
    before = await asyncio.to_thread(compose_file.read_text)
    broken = instance.stack.model_copy(update={"adapter_image": "127.0.0.1:9/missing/adapter:2"})
    service.update("it-bot", InstanceUpdate(stack=broken))
    final = await service.tasks.wait(service.deploy("it-bot").id)
    assert final.state == "failed"
    assert "previous compose file and containers were kept" in str(final.error)
    assert await asyncio.to_thread(compose_file.read_text) == before
    assert _get(ports["webui_port"]).startswith("role=core")
    status = await service.status("it-bot")
    assert status["instance"].status == "running"
    assert len(status["containers"]) == 4
    # the settings are put back and a redeploy converges again
    service.update("it-bot", InstanceUpdate(stack=instance.stack))
    again = await service.tasks.wait(service.deploy("it-bot").id)
    assert again.state == "succeeded", again.error
    assert await asyncio.to_thread(compose_file.read_text) == before


async def test_a_failed_first_deploy_leaves_nothing(
    service: AppService, maibot_standins: dict[str, str]
) -> None:
    # an image that is not here and whose registry refuses connections: the pull fails
    standins = {**maibot_standins, "adapter_image": "127.0.0.1:9/missing/adapter:1"}
    stack = StackConfig(**standins, webui_port=None, napcat_port=None, sqlite_web_port=None)
    service.create(InstanceCreate(name="it-broken", stack=stack))
    task = service.deploy("it-broken")
    final = await service.tasks.wait(task.id)
    assert final.state == "failed"
    assert "it-broken" in str(final.error)
    assert "removed" in str(final.error)
    instance = service.get("it-broken")
    assert instance.status == "created"
    assert instance.container_ids == []
    assert not (service.root / "it-broken").exists()
    assert await service.compose().ps("maibot-it-broken") == []
    await service.delete("it-broken")


async def test_config_edit_reaches_the_running_core(
    service: AppService, ports: dict[str, int]
) -> None:
    bot_config = service.config_path(service.get("it-bot"), "bot")
    before = await asyncio.to_thread(bot_config.read_text)
    result = await service.edit_config("it-bot", "bot", set_values={"bot.nickname": "麦麦"})
    assert result["restarted"] == ["core"]
    text = await asyncio.to_thread(bot_config.read_text)
    assert "# MaiBot bot_config.toml" in text  # the comment survived
    assert 'nickname = "麦麦"' in _get(ports["webui_port"])  # the restarted core read it
    assert service.read_config("it-bot", "bot")["values"]["bot"]["nickname"] == "麦麦"
    assert before != text


async def test_a_toml_syntax_error_changes_nothing(
    service: AppService, ports: dict[str, int]
) -> None:
    adapter = service.config_path(service.get("it-bot"), "adapter")
    broken = (await asyncio.to_thread(adapter.read_text)) + "\n[maibot_server\nport = 1\n"
    await asyncio.to_thread(adapter.write_text, broken)
    with pytest.raises(TomlSyntaxError, match=r"config.toml:\d+:\d+"):
        await service.edit_config("it-bot", "adapter", set_values={"maibot_server.port": 8001})
    assert await asyncio.to_thread(adapter.read_text) == broken
    status = await service.status("it-bot")
    assert status["instance"].status == "running"  # nothing was restarted
    with pytest.raises(AppConfigError):  # a bad value: nothing written
        await service.edit_config("it-bot", "bot", set_values={"nosuch.table": 1})


async def test_backup_and_restore_under_a_new_name(service: AppService) -> None:
    result = await service.backup("it-bot")
    archive = Path(result["archive"])
    assert "docker-config" in result["manifest"]["paths"]
    restored = await service.restore(archive, "it-bot-copy")
    assert restored.stack == service.get("it-bot").stack
    assert restored.status == "created"
    assert restored.docker_network == "maibot-it-bot-copy_maim_bot"
    copy = service.config_path(restored, "bot")
    assert 'nickname = "麦麦"' in await asyncio.to_thread(copy.read_text)
    with pytest.raises(AppConflict, match="it-bot-copy"):
        await service.restore(archive, "it-bot-copy")
    await service.delete("it-bot-copy")


async def test_image_update_check(
    service: AppService, maibot_standins: dict[str, str], local_registry: LocalRegistry
) -> None:
    ref = f"{local_registry.host}/maibot-standin:1"
    absent = f"{local_registry.host}/absent:1"
    async with await DockerEngine.connect(service.engine_url) as engine:
        # a newer image in the registry behind the tag ...
        newer = _context_with_label(maibot_standins["core_image"], os.urandom(4).hex())
        await engine.build_image(newer, tag=ref)
        await engine.push_image(ref.rsplit(":", 1)[0], tag="1")
        stack = StackConfig(
            core_image=ref,
            napcat_image=absent,
            adapter_image=absent,
            webui_port=None,
            napcat_port=None,
        )
        service.create(InstanceCreate(name="it-upd", stack=stack))
        checks = {c["reference"]: c for c in await service.check_updates("it-upd")}
        assert checks[ref]["update_available"] is False  # local is what was pushed
        assert checks[absent]["update_available"] is None
        assert "absent" in checks[absent]["error"]
        # ... while the local tag points at the older stand-in
        await engine.tag_image(maibot_standins["core_image"], ref.rsplit(":", 1)[0], "1")
        checks = {c["reference"]: c for c in await service.check_updates("it-upd")}
        assert checks[ref]["update_available"] is True
    await service.delete("it-upd")


async def test_remove(service: AppService) -> None:
    root = service.directory(service.get("it-bot"))
    await service.delete("it-bot")
    with pytest.raises(AppNotFound):
        service.get("it-bot")
    assert not root.exists()
    assert await service.compose().ps("maibot-it-bot") == []
