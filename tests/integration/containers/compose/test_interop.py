"""Interop with Debian's docker-compose 1.29.2, both ways, on the same dockerd.

- the config hash: ours equals ``docker-compose config --hash=*`` for services that use
  most of the file format (short/long ports and volumes, env files, healthchecks, deploy,
  networks with aliases and priorities, a build);
- a stack docker-compose started is listed by our ``ps``, our ``up`` recreates nothing,
  and our ``down`` removes it;
- a stack we started is listed by ``docker-compose ps``, ``docker-compose up -d`` finds
  every service up to date, and ``docker-compose down`` removes it.

docker-compose 1.29 rejects a top-level ``name:``, so these files have none.
"""

from __future__ import annotations

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.hashing import config_hash
from cargobay.containers.compose.loader import bare_project
from cargobay.containers.compose.spec import image_name
from cargobay.containers.engine import DockerEngine
from cargobay.errors import ImageNotFound

from .conftest import Stack, StackFactory

RICH = """
version: "3.8"
services:
  api:
    build:
      context: ./ctx
      args: {FLAVOUR: plain}
    command: sh -c "exec sleep 300"
    env_file: app.env
    environment:
      NUM: 1
      FROM_DOTENV: $DOTENV_VALUE
      BARE:
    labels: {team: core, n: 1}
    ports:
      - "127.0.0.1::80"
      - "127.0.0.1::9000-9001/udp"
      - {target: 81, protocol: tcp}
    volumes:
      - ./ctx:/ctx:ro
      - data:/data
      - /anon
      - {type: tmpfs, target: /run/t, tmpfs: {size: 1m}}
      - {type: volume, source: data, target: /data2, volume: {nocopy: true}}
    healthcheck: {test: ["CMD", "true"], interval: 1m30s, timeout: 500ms, retries: "3"}
    restart: on-failure:3
    extra_hosts: ["h1:10.0.0.1"]
    stop_grace_period: 2s
    stop_signal: SIGKILL
    user: root
    working_dir: /
    depends_on: [db]
    networks:
      back: {aliases: [api1]}
      default:
    secrets: [token, {source: token, target: renamed}]
    configs: [{source: settings, target: /etc/app.conf}]
    x-note: extension
  db:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    deploy:
      replicas: 2
      restart_policy: {condition: on-failure, max_attempts: 2}
      resources: {limits: {cpus: "0.25", memory: 64M}, reservations: {memory: 32M}}
    networks: {back: {priority: 10}, default: {priority: 1}}
    labels: [plain, k=v]
  idle:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    network_mode: none
    healthcheck: {disable: true}
networks:
  back: {}
volumes:
  data: {}
secrets:
  token: {file: ./token.txt}
configs:
  settings: {file: ./app.conf}
"""
FILES = {
    "app.conf": "level=debug\n",
    "token.txt": "s3cret\n",
    "ctx/Dockerfile": "FROM BUSYBOX\nARG FLAVOUR\nLABEL flavour=$FLAVOUR\n",
    "app.env": 'FROM_FILE=1\nQUOTED="two words"\n',
    ".env": "DOTENV_VALUE=from-dotenv\n",
}


async def _our_hashes(stack: Stack) -> dict[str, str]:
    loaded = stack.load()
    out = {}
    async with await DockerEngine.connect(stack.docker_url) as engine:
        for name, service in loaded.project.services.items():
            try:
                image_id: str | None = str(
                    (await engine.inspect_image(image_name(loaded.project, service)))["Id"]
                )
            except ImageNotFound:
                image_id = None
            out[name] = config_hash(
                loaded.project, name, loaded.raw_services[name], loaded.environment, image_id
            )
    return out


def _their_hashes(stack: Stack) -> dict[str, str]:
    output = stack.docker_compose("config", "--hash=*").stdout
    return dict(line.split() for line in output.splitlines() if line.strip())  # type: ignore[misc]


async def test_config_hash_matches_docker_compose(stack: StackFactory, compose_bin: str) -> None:
    s = stack(RICH, files=FILES)
    before = _their_hashes(s)  # the built image does not exist yet: image id null
    assert before == await _our_hashes(s)
    s.docker_compose("build")
    after = _their_hashes(s)
    assert after["api"] != before["api"]  # now the image id counts
    assert after == await _our_hashes(s)


OVERRIDE = """
services:
  api:
    environment: {NUM: 2, EXTRA: "yes"}
    labels: [extra=1]
    ports: ["127.0.0.1::81/udp", {target: 80, published: 18080}]
    volumes: ["./ctx:/ctx", {type: tmpfs, target: /run/u}]
    networks: {back: {aliases: [api2], priority: 5}}
    healthcheck: {retries: 5}
  db:
    deploy: {replicas: 1, resources: {limits: {memory: 48M}}}
    labels: {more: "yes"}
"""


async def test_config_hash_matches_with_an_override_file(
    stack: StackFactory, compose_bin: str
) -> None:
    """Two files: docker-compose 1.29 normalizes every service through its merge (sorted
    lists, extensions dropped, ...); the hash must still agree."""
    s = stack(RICH, files={**FILES, "docker-compose.override.yml": OVERRIDE})
    assert _their_hashes(s) == await _our_hashes(s)


EXOTIC = """
services:
  a:
    image: BUSYBOX
    entrypoint: /bin/sh -c
    command: exec sleep 300
    links: [b, "b:bee"]
    sysctls: [net.core.somaxconn=1024]
    ulimits: {nofile: {soft: 100, hard: "200"}, nproc: 50}
    tmpfs: /run
    dns: [1.1.1.1]
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    init: true
    tty: "yes"
    stdin_open: true
    shm_size: 64m
    cpus: "0.5"
    mem_limit: 64m
    logging: {driver: json-file, options: {max-size: 1m}}
    hostname: alpha
    domainname: example.test
    mac_address: 02:42:ac:11:00:09
    expose: [3000, "4000/udp"]
    extra_hosts: {h1: 10.0.0.1}
    labels: {int: 1, float: 1.5, bool: true}
    environment: {PI: 3.14}
    healthcheck: {test: "true", start_period: 1s}
    restart: unless-stopped
    profiles: [extra]
    x-ext: {any: thing}
  b:
    image: BUSYBOX
    network_mode: host
    restart: "no"
    stop_grace_period: 1m30s
    read_only: true
    privileged: false
    user: nobody
"""


async def test_config_hash_matches_for_less_common_keys(
    stack: StackFactory, compose_bin: str
) -> None:
    s = stack(EXOTIC)
    theirs = dict(
        line.split()  # type: ignore[misc]
        for line in s.docker_compose("--profile", "extra", "config", "--hash=*").stdout.splitlines()
        if line.strip()
    )
    loaded = s.load(profiles=["extra"])
    async with await DockerEngine.connect(s.docker_url) as engine:
        image_id = str((await engine.inspect_image(loaded.project.services["a"].image or ""))["Id"])
    ours = {
        name: config_hash(loaded.project, name, loaded.raw_services[name], {}, image_id)
        for name in loaded.project.services
    }
    assert theirs == ours


EXTENDED = """
services:
  base:
    image: BUSYBOX
    command: ["sleep", "300"]
    environment: [FROM_BASE=1, SHARED=base]
    volumes: ["./data:/data"]
    cap_add: [SYS_TIME]
    ports: ["127.0.0.1::90"]
    healthcheck: {test: "true", interval: 2s}
  mid:
    extends: base
    environment: {MID: "1"}
"""
EXTENDING = """
services:
  web:
    extends: {file: common/base.yml, service: mid}
    environment: [SHARED=web]
    cap_add: [NET_ADMIN]
    stop_signal: SIGKILL
  again:
    extends: web
    labels: {again: "yes"}
"""


async def test_config_hash_matches_with_extends(stack: StackFactory, compose_bin: str) -> None:
    """``extends`` from another file (nested) and the same file: 1.29 processes the base in
    its own directory, then merges; the hashes agree and an `up` by one tool is
    up to date for the other."""
    s = stack(EXTENDING, files={"common/base.yml": EXTENDED})
    assert _their_hashes(s) == await _our_hashes(s)
    await s.service.up(s.load())
    result = s.docker_compose("up", "-d")
    output = result.stdout + result.stderr
    assert f"{s.name}_web_1 is up-to-date" in output, output
    assert f"{s.name}_again_1 is up-to-date" in output, output


async def test_stack_started_by_docker_compose(stack: StackFactory, compose_bin: str) -> None:
    s = stack(RICH, files=FILES)
    s.docker_compose("up", "-d")
    rows = await s.service.ps(s.name)
    assert {r["name"] for r in rows} == {f"{s.name}_api_1", f"{s.name}_db_1", f"{s.name}_db_2",
                                         f"{s.name}_idle_1"}  # fmt: skip
    assert {r["state"] for r in rows} == {"running"}
    plan = await s.service.up(s.load(), emit=s.emit)
    assert {sp.action for sp in plan.services.values()} == {"noop"}, s.events
    assert not plan.changes
    assert not [e for e in s.events if e.get("status") in ("Creating", "Recreating")]
    # down by project name alone (no file): everything is found by its labels
    await s.service.down(bare_project(s.name), volumes=True)
    assert await s.service.ps(s.name) == []
    async with await DockerEngine.connect(s.docker_url) as engine:
        assert await engine.list_networks(labels={L.PROJECT: s.name}) == []
        assert await engine.list_volumes(labels={L.PROJECT: s.name}) == []


async def test_stack_started_by_us(stack: StackFactory, compose_bin: str) -> None:
    s = stack(RICH, files=FILES)
    await s.service.up(s.load())
    listed = s.docker_compose("ps").stdout
    for name in ("api_1", "db_1", "db_2", "idle_1"):
        assert f"{s.name}_{name}" in listed
    result = s.docker_compose("up", "-d")
    output = result.stdout + result.stderr
    for name in ("api_1", "db_1", "db_2", "idle_1"):
        assert f"{s.name}_{name} is up-to-date" in output, output
    assert "Recreating" not in output, output
    assert "Creating" not in output, output
    async with await DockerEngine.connect(s.docker_url) as engine:
        code, output = await engine.exec_run(f"{s.name}_api_1", ["cat", "/run/secrets/renamed"])
        assert code == 0
        assert b"s3cret" in output
        code, output = await engine.exec_run(f"{s.name}_api_1", ["cat", "/etc/app.conf"])
        assert code == 0
        assert b"level=debug" in output
    s.docker_compose("down", "-v", "-t", "1")
    assert await s.service.ps(s.name) == []
    async with await DockerEngine.connect(s.docker_url) as engine:
        assert await engine.list_networks(labels={L.PROJECT: s.name}) == []
        assert await engine.list_volumes(labels={L.PROJECT: s.name}) == []


SHARED = """
services:
  app:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    network_mode: "service:base"
    ipc: "service:base"
  base:
    image: BUSYBOX
    command: ["sleep", "301"]
    stop_signal: SIGKILL
    ipc: shareable
"""


async def test_shared_namespaces_are_up_to_date(stack: StackFactory, compose_bin: str) -> None:
    """1.29 hashes ``ipc: service:X`` as X's running container id: the hash is computed
    once that container exists, and docker-compose agrees."""
    s = stack(SHARED)
    await s.service.up(s.load())
    result = s.docker_compose("up", "-d")
    output = result.stdout + result.stderr
    for name in ("app_1", "base_1"):
        assert f"{s.name}_{name} is up-to-date" in output, output
    plan = await s.service.up(s.load())
    assert {p.action for p in plan.services.values()} == {"noop"}
    s.docker_compose("down", "-t", "1")
