"""``up``/``ps``/``stop``/``start``/``restart``/``logs``/``down`` on a real dockerd, and a
failed ``up`` that rolls back."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cargobay.containers.compose import labels as L
from cargobay.containers.engine import DockerEngine
from cargobay.errors import ComposeError, InvalidInput

from .conftest import Stack, StackFactory

STACK = """
services:
  db:
    image: BUSYBOX
    command: ["sh", "-c", "echo hello-from-db; touch /tmp/ok; exec sleep 300"]
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ok"], interval: 1s, timeout: 1s, retries: 5}
    volumes: ["data:/data"]
    stop_signal: SIGKILL
  init:
    image: BUSYBOX
    command: ["true"]
  web:
    image: BUSYBOX
    command: ["sh", "-c", "exec httpd -f -p 80"]
    environment: [GREETING=one]
    depends_on:
      db: {condition: service_healthy}
      init: {condition: service_completed_successfully}
    ports: ["127.0.0.1::80"]
    deploy: {replicas: 2}
    networks: [default, back]
    stop_signal: SIGKILL
networks:
  back:
volumes:
  data:
"""


async def _state(stack: Stack) -> dict[str, tuple[str, str]]:
    """container name -> (id, state)"""
    rows = await stack.service.ps(stack.name)
    return {row["name"]: (row["id"], row["state"]) for row in rows}


async def _leftovers(stack: Stack) -> list[str]:
    async with await DockerEngine.connect(stack.docker_url) as engine:
        found = [c["Names"][0] for c in await engine.list_containers(
            all=True, labels={L.PROJECT: stack.name})]  # fmt: skip
        found += [n["Name"] for n in await engine.list_networks(labels={L.PROJECT: stack.name})]
        found += [v["Name"] for v in await engine.list_volumes(labels={L.PROJECT: stack.name})]
    return found


async def test_lifecycle(stack: StackFactory) -> None:
    s = stack(STACK)
    p = s.name
    await s.service.up(s.load(), emit=s.emit)
    state = await _state(s)
    assert set(state) == {f"{p}_db_1", f"{p}_init_1", f"{p}_web_1", f"{p}_web_2"}
    assert state[f"{p}_init_1"][1] == "exited"
    assert state[f"{p}_db_1"][1] == state[f"{p}_web_1"][1] == "running"
    # the dependents started only after the db was healthy and init had exited 0
    statuses = [(e.get("name"), e.get("status")) for e in s.events]
    assert statuses.index((f"{p}_db_1", "Healthy")) < statuses.index((f"{p}_web_1", "Starting"))
    assert statuses.index((f"{p}_init_1", "Exited")) < statuses.index((f"{p}_web_1", "Starting"))

    async with await DockerEngine.connect(s.docker_url) as engine:
        web = await engine.inspect_container(f"{p}_web_1")
        labels = web["Config"]["Labels"]
        assert labels[L.PROJECT] == p
        assert labels[L.SERVICE] == "web"
        assert labels[L.CONTAINER_NUMBER] == "1"
        assert labels[L.ONEOFF] == "False"
        assert set(web["NetworkSettings"]["Networks"]) == {f"{p}_default", f"{p}_back"}
        assert "web" in web["NetworkSettings"]["Networks"][f"{p}_back"]["Aliases"]
        network = await engine.inspect_network(f"{p}_back")
        assert network["Labels"][L.NETWORK] == "back"
        volume = await engine.inspect_volume(f"{p}_data")
        assert volume["Labels"][L.VOLUME] == "data"

    # idempotent: nothing running is touched
    plan = await s.service.up(s.load())
    assert {n: sp.action for n, sp in plan.services.items() if n != "init"} == {
        "db": "noop", "web": "noop"}  # fmt: skip
    again = await _state(s)
    assert again[f"{p}_db_1"] == state[f"{p}_db_1"]
    assert again[f"{p}_web_2"] == state[f"{p}_web_2"]

    # a changed service is recreated, the rest kept
    (s.directory / "docker-compose.yml").write_text(
        (s.directory / "docker-compose.yml").read_text().replace("GREETING=one", "GREETING=two")
    )
    plan = await s.service.up(s.load())
    assert plan.services["web"].action == "recreate"
    assert plan.services["db"].action == "noop"
    after = await _state(s)
    assert after[f"{p}_db_1"] == state[f"{p}_db_1"]
    assert after[f"{p}_web_1"][0] != state[f"{p}_web_1"][0]
    assert set(after) == set(state)  # the old containers are gone

    matching = [e["line"] async for e in s.service.logs(p, grep=r"^hello-from-d.$")]
    assert matching == ["hello-from-db"]
    with pytest.raises(InvalidInput, match="bad --grep"):
        [e async for e in s.service.logs(p, grep="(")]
    logs = [e async for e in s.service.logs(p, services=["db"])]
    assert {"type": "log", "container": f"{p}_db_1", "service": "db", "stream": "stdout",
            "line": "hello-from-db"} in logs  # fmt: skip

    await s.service.stop(s.load())
    assert {st for _, st in (await _state(s)).values()} == {"exited"}
    await s.service.start(s.load(), services=["db"])
    assert (await _state(s))[f"{p}_db_1"][1] == "running"
    await s.service.restart(s.load(), services=["db"])
    assert (await _state(s))[f"{p}_db_1"][1] == "running"

    await s.service.down(s.load(), volumes=True)
    assert await _leftovers(s) == []


async def test_failed_up_rolls_back_and_names_the_service(stack: StackFactory) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        s = stack(f"""
services:
  ok:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    volumes: ["v:/v"]
  clash:
    image: BUSYBOX
    command: ["sleep", "300"]
    depends_on: [ok]
    ports: ["127.0.0.1:{port}:80"]
volumes:
  v:
""")
        with pytest.raises(ComposeError) as info:
            await s.service.up(s.load(), emit=s.emit)
    message = str(info.value)
    assert "service 'clash'" in message
    assert str(port) in message
    assert "removed again" in message
    assert await _leftovers(s) == []


async def test_missing_image_and_unhealthy_dependency(stack: StackFactory) -> None:
    s = stack("""
services:
  app:
    image: 127.0.0.1:9/cargobay-test/absent:0
""")
    with pytest.raises(ComposeError, match=r"service 'app': image 127\.0\.0\.1:9/.* not present"):
        await s.service.up(s.load())
    assert await _leftovers(s) == []

    s2 = stack("""
services:
  sick:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    healthcheck: {test: ["CMD", "false"], interval: 500ms, timeout: 1s, retries: 1}
  app:
    image: BUSYBOX
    command: ["sleep", "300"]
    depends_on: {sick: {condition: service_healthy}}
""")
    with pytest.raises(ComposeError, match=r"service 'app'.*unhealthy"):
        await asyncio.wait_for(s2.service.up(s2.load()), 60)
    assert await _leftovers(s2) == []


async def test_two_ups_at_once_create_one_stack(stack: StackFactory) -> None:
    s = stack("""
services:
  a:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
""")
    loaded = s.load()
    plans = await asyncio.gather(s.service.up(loaded), s.service.up(loaded))
    assert sorted(p.services["a"].action for p in plans) == ["create", "noop"]
    assert [r["name"] for r in await s.service.ps(s.name)] == [f"{s.name}_a_1"]


async def test_shared_namespaces(stack: StackFactory) -> None:
    """``network_mode``/``pid``/``ipc: service:X`` need X's container first (an implicit
    dependency) and share its namespaces."""
    s = stack("""
services:
  app:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    network_mode: "service:base"
    pid: "service:base"
    ipc: "service:base"
  base:
    image: BUSYBOX
    command: ["sleep", "301"]
    stop_signal: SIGKILL
    ipc: shareable
""")
    await s.service.up(s.load())
    async with await DockerEngine.connect(s.docker_url) as engine:
        app = await engine.inspect_container(f"{s.name}_app_1")
        base = await engine.inspect_container(f"{s.name}_base_1")
        assert app["HostConfig"]["NetworkMode"] == f"container:{base['Id']}"
        code, output = await engine.exec_run(f"{s.name}_app_1", ["ps", "-o", "args"])
        assert code == 0
        assert b"sleep 301" in output  # base's process, seen through the shared pid namespace
    assert base["State"]["Running"]


async def test_up_wait_returns_once_healthy(stack: StackFactory) -> None:
    s = stack("""
services:
  slow:
    image: BUSYBOX
    command: ["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 300"]
    stop_signal: SIGKILL
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ok"], interval: 300ms, retries: 30}
  plain:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
""")
    await s.service.up(s.load(), wait=True, emit=s.emit)
    rows = {r["service"]: r for r in await s.service.ps(s.name)}
    assert rows["slow"]["health"] == "healthy"
    assert rows["plain"]["state"] == "running"
    assert (f"{s.name}_slow_1", "Healthy") in [(e.get("name"), e.get("status")) for e in s.events]
