"""Engine API bodies built from services (containers, networks, volumes)."""

from __future__ import annotations

from pathlib import Path

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.loader import load_project
from cargobay.containers.compose.spec import (
    container_create_body,
    image_name,
    network_create_args,
    volume_create_args,
)

TEXT = """
services:
  web:
    image: img
    command: echo "a b" c
    entrypoint: [/bin/sh, -c]
    environment: [A=1, FROM_SHELL, UNSET]
    env_file: e.env
    labels: {mine: "1"}
    ports: ["127.0.0.1:8080:80", "53/udp"]
    expose: [9000]
    volumes: [./src:/src:ro, data:/data, /anon, {type: tmpfs, target: /t, tmpfs: {size: 1k}}]
    networks:
      front: {aliases: [w], ipv4_address: 10.9.0.5, priority: 5}
      default:
    healthcheck: {test: "true", interval: 2s, retries: 2}
    restart: on-failure:3
    stop_grace_period: 5s
    user: "1000"
    working_dir: /w
    mac_address: 02:42:ac:11:00:02
    extra_hosts: ["h:10.0.0.1"]
    deploy: {resources: {limits: {cpus: "0.5", memory: 64M}}}
  built:
    build: .
networks:
  front:
    ipam: {config: [{subnet: 10.9.0.0/24}]}
    labels: {net: "1"}
volumes:
  data: {labels: {vol: "1"}}
"""


def test_container_body(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(TEXT)
    (tmp_path / "e.env").write_text("FROM_FILE=f\nA=overridden-by-environment\n")
    loaded = load_project(working_dir=tmp_path, env={"FROM_SHELL": "s"}, project_name="p")
    project = loaded.project
    spec = container_create_body(project, project.services["web"], 2, config_hash="H",
                                 environment=loaded.environment)  # fmt: skip
    body = spec.body
    assert spec.name == "p_web_2"
    assert body["Image"] == "img"
    assert body["Cmd"] == ["echo", "a b", "c"]
    assert body["Entrypoint"] == ["/bin/sh", "-c"]
    assert body["Env"] == ["FROM_FILE=f", "A=1", "FROM_SHELL=s", "UNSET"]
    labels = body["Labels"]
    assert labels["mine"] == "1"
    assert labels[L.PROJECT] == "p"
    assert labels[L.SERVICE] == "web"
    assert labels[L.CONTAINER_NUMBER] == "2"
    assert labels[L.CONFIG_HASH] == "H"
    assert labels[L.ONEOFF] == "False"
    assert labels[L.VERSION] == "1.29.2"
    assert labels[L.WORKING_DIR] == str(tmp_path)
    assert labels[L.CONFIG_FILES] == str(tmp_path / "compose.yaml")
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}}
    host = body["HostConfig"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                    "53/udp": [{"HostIp": "", "HostPort": ""}]}  # fmt: skip
    assert host["Binds"] == [f"{tmp_path / 'src'}:/src:ro"]
    assert {"Type": "volume", "Source": "p_data", "Target": "/data", "ReadOnly": False} in host[
        "Mounts"
    ]
    assert {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}} in host["Mounts"]
    assert body["Volumes"] == {"/anon": {}}
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Memory"] == 64 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert host["ExtraHosts"] == ["h:10.0.0.1"]
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000,
                                   "Retries": 2}  # fmt: skip
    assert body["StopTimeout"] == 5
    assert body["User"] == "1000"
    assert body["WorkingDir"] == "/w"
    assert body["MacAddress"] == "02:42:ac:11:00:02"
    # the higher-priority network is the primary one; the other is joined before start
    assert host["NetworkMode"] == "p_front"
    endpoint = body["NetworkingConfig"]["EndpointsConfig"]["p_front"]
    assert endpoint == {"Aliases": ["w", "web"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}}
    assert spec.extra_networks == {"p_default": {"aliases": ["web"], "ipv4_address": None}}


def test_build_image_name_and_resources(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(TEXT)
    (tmp_path / "e.env").write_text("")
    project = load_project(working_dir=tmp_path, env={}, project_name="p").project
    assert image_name(project, project.services["built"]) == "p_built"
    net = network_create_args(project, "front")
    assert net["name"] == "p_front"
    assert net["labels"] == {"net": "1", L.PROJECT: "p", L.NETWORK: "front",
                             L.VERSION: "1.29.2"}  # fmt: skip
    assert net["ipam"]["Config"] == [{"Subnet": "10.9.0.0/24"}]
    vol = volume_create_args(project, "data")
    assert vol["name"] == "p_data"
    assert vol["labels"] == {"vol": "1", L.PROJECT: "p", L.VOLUME: "data",
                             L.VERSION: "1.29.2"}  # fmt: skip


def test_deploy_restart_policy(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db:\n    image: x\n    deploy:\n"
        "      restart_policy: {condition: on-failure, max_attempts: 2}\n"
    )
    project = load_project(working_dir=tmp_path, env={}, project_name="p").project
    spec = container_create_body(project, project.services["db"], 1, config_hash="H",
                                 environment={})  # fmt: skip
    assert spec.name == "p_db_1"
    assert spec.body["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                        "MaximumRetryCount": 2}  # fmt: skip


def test_namespaces_and_resource_knobs(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  a:\n    image: x\n    pid: host\n    ipc: service:b\n    group_add: [audio, 44]\n"
        "    oom_score_adj: -500\n    mem_reservation: 32m\n    memswap_limit: -1\n"
        "    pids_limit: 50\n    cpu_shares: 512\n    cpuset: '0'\n    dns_search: example.test\n"
        "    dns_opt: [ndots:1]\n    runtime: runc\n"
        "  b:\n    image: x\n    ipc: shareable\n"
    )
    project = load_project(working_dir=tmp_path, env={}, project_name="p").project
    host = container_create_body(project, project.services["a"], 1, config_hash="H",
                                 environment={}).body["HostConfig"]  # fmt: skip
    assert host["PidMode"] == "host"
    assert host["IpcMode"] == "container:p_b_1"
    assert host["GroupAdd"] == ["audio", "44"]
    assert host["OomScoreAdj"] == -500
    assert host["MemoryReservation"] == 32 * 2**20
    assert host["MemorySwap"] == -1
    assert host["PidsLimit"] == 50
    assert host["CpuShares"] == 512
    assert host["CpusetCpus"] == "0"
    assert host["DnsSearch"] == ["example.test"]
    assert host["DnsOptions"] == ["ndots:1"]
    assert host["Runtime"] == "runc"
