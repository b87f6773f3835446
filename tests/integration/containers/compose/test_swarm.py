"""``compose deploy --swarm`` against a single-node swarm made for the test (Engine API:
``POST /swarm/init`` with advertise address 127.0.0.1, ``/swarm/leave?force`` at the end,
unless the engine was already in a swarm), with the local busybox image."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from cargobay.containers.compose.swarm import NAMESPACE, deploy_stack, remove_stack
from cargobay.containers.engine import DockerEngine
from cargobay.errors import ComposeError
from tests.support import require_binary

from .conftest import StackFactory

STACK = """
services:
  web:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    restart: always
    environment: [ROLE=web]
    deploy:
      replicas: 2
      resources: {limits: {memory: 32M}}
      labels: {tier: front}
    networks: [front]
  worker:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    container_name: not-for-swarm
    depends_on:
      web: {condition: service_started}
    volumes: ["data:/data"]
    secrets: [{source: token, target: api-token}]
    configs: [{source: settings, target: /etc/app.conf}]
networks:
  front: {}
volumes:
  data: {}
secrets:
  token: {file: ./token.txt}
configs:
  settings: {file: ./app.conf}
"""


FILES = {"token.txt": "s3cret\n", "app.conf": "level=debug\n"}


@pytest.fixture
async def swarm(docker_engine: str) -> AsyncIterator[str]:
    async with await DockerEngine.connect(docker_engine) as engine:
        state = ((await engine.info()).get("Swarm") or {}).get("LocalNodeState")
        made = state != "active"
        if made:
            await engine.docker._query_json(
                "swarm/init",
                "POST",
                data=json.dumps({"ListenAddr": "127.0.0.1:2377", "AdvertiseAddr": "127.0.0.1"}),
            )
    try:
        yield docker_engine
    finally:
        if made:
            async with (
                await DockerEngine.connect(docker_engine) as engine,
                engine.docker._query("swarm/leave", "POST", params={"force": "true"}),
            ):
                pass


async def _running_tasks(engine: DockerEngine, service: str) -> int:
    tasks = await engine.docker._query_json(
        "tasks",
        params={"filters": json.dumps({"service": [service], "desired-state": ["running"]})},
    )
    return sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running")


async def test_deploy_to_a_single_node_swarm(stack: StackFactory, swarm: str) -> None:
    s = stack(STACK, files=FILES)
    loaded = s.load()
    ns = s.name
    try:
        result = await deploy_stack(swarm, loaded, emit=s.emit)
        assert result["services"] == [f"{ns}_web", f"{ns}_worker"]
        warnings = [e["message"] for e in s.events if e["type"] == "warning"]
        assert any("container_name" in w for w in warnings)
        assert any("depends_on" in w for w in warnings)
        assert any("restart" in w for w in warnings)
        async with await DockerEngine.connect(swarm) as engine:
            services = await engine.docker._query_json(
                "services", params={"filters": json.dumps({"label": [f"{NAMESPACE}={ns}"]})}
            )
            by_name = {svc["Spec"]["Name"]: svc["Spec"] for svc in services}
            web = by_name[f"{ns}_web"]
            assert web["Labels"][NAMESPACE] == ns
            assert web["Labels"]["tier"] == "front"
            assert web["Mode"]["Replicated"]["Replicas"] == 2
            container = web["TaskTemplate"]["ContainerSpec"]
            assert container["Labels"][NAMESPACE] == ns
            assert "ROLE=web" in container["Env"]
            assert web["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
            network = await engine.inspect_network(f"{ns}_front")
            assert network["Driver"] == "overlay"
            assert network["Labels"][NAMESPACE] == ns
            worker = by_name[f"{ns}_worker"]["TaskTemplate"]["ContainerSpec"]
            assert worker["Mounts"][0]["Source"] == f"{ns}_data"
            [secret] = worker["Secrets"]
            assert (secret["SecretName"], secret["File"]["Name"]) == (f"{ns}_token", "api-token")
            [config] = worker["Configs"]
            assert (config["ConfigName"], config["File"]["Name"]) == (
                f"{ns}_settings",
                "/etc/app.conf",
            )
            # the tasks run from the local image (no registry)
            for _ in range(120):
                if await _running_tasks(engine, f"{ns}_web") == 2:
                    break
                await asyncio.sleep(0.5)
            assert await _running_tasks(engine, f"{ns}_web") == 2
        # deploying again updates the services in place
        again = await deploy_stack(swarm, loaded, emit=s.emit)
        assert again["services"] == result["services"]
        assert [e for e in s.events if e.get("status") == "Updating"]
    finally:
        await remove_stack(swarm, ns)
    async with await DockerEngine.connect(swarm) as engine:
        assert await engine.list_networks(labels={NAMESPACE: ns}) == []
        label = json.dumps({"label": [f"{NAMESPACE}={ns}"]})
        assert await engine.docker._query_json("secrets", params={"filters": label}) == []
        assert await engine.docker._query_json("configs", params={"filters": label}) == []


async def test_deploy_needs_a_swarm_manager(stack: StackFactory, docker_engine: str) -> None:
    async with await DockerEngine.connect(docker_engine) as engine:
        if ((await engine.info()).get("Swarm") or {}).get("LocalNodeState") == "active":
            pytest.skip("the engine is in a swarm already")
    s = stack(STACK, files=FILES)
    with pytest.raises(ComposeError, match="not a Swarm manager"):
        await deploy_stack(docker_engine, s.load(), emit=s.emit)


async def test_exported_file_deploys_with_docker_stack(stack: StackFactory, swarm: str) -> None:
    """``export --swarm`` writes a file ``docker stack deploy`` (Debian's docker CLI)
    accepts; the stack's services get the namespace label."""
    import shutil
    import subprocess

    from cargobay.containers.compose.export import export_swarm

    docker = require_binary("docker", "Debian: apt-get install docker.io")
    s = stack(STACK, files=FILES)
    exported = s.directory / "stack.yml"
    exported.write_text(export_swarm(s.load()).yaml())
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": swarm, "HOME": str(s.directory)}
    ns = f"{s.name}x"
    deployed = await asyncio.to_thread(
        subprocess.run,
        [docker, "stack", "deploy", "-c", str(exported), ns],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    try:
        assert deployed.returncode == 0, deployed.stderr
        async with await DockerEngine.connect(swarm) as engine:
            services = await engine.docker._query_json(
                "services", params={"filters": json.dumps({"label": [f"{NAMESPACE}={ns}"]})}
            )
            assert sorted(svc["Spec"]["Name"] for svc in services) == [f"{ns}_web",
                                                                      f"{ns}_worker"]  # fmt: skip
    finally:
        await remove_stack(swarm, ns)
    assert shutil.which(docker)
