"""The structure docker-compose 1.29.2 hashes (its config_dict), rebuilt from the file.

The hashes themselves are compared with the ones docker-compose computes in
tests/integration/containers/compose/test_hash_interop.py (it needs dockerd for image
ids); here the structure is checked piece by piece."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cargobay.containers.compose.hashing import compose129_config_dict, config_hash, json_hash
from cargobay.containers.compose.loader import LoadedProject, load_project


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedProject:
    (tmp_path / "docker-compose.yml").write_text(text)
    return load_project(working_dir=tmp_path, env=env or {})


def config_dict(loaded: LoadedProject, name: str, image_id: str | None = "sha256:1") -> Any:
    return compose129_config_dict(
        loaded.project, name, loaded.raw_services[name], loaded.environment, image_id
    )


def test_json_hash_is_sha256_of_canonical_json() -> None:
    obj = {"b": [1, None], "a": {"y": 1, "x": "é"}}
    canonical = '{"a":{"x":"\\u00e9","y":1},"b":[1,null]}'
    assert json_hash(obj) == hashlib.sha256(canonical.encode()).hexdigest()


def test_minimal_service(tmp_path: Path) -> None:
    loaded = load(tmp_path / "", "services:\n  a:\n    image: busybox\n")
    name = loaded.project.name
    assert config_dict(loaded, "a") == {
        "options": {"image": "busybox", "volumes": [], "device_requests": None,
                    "platform": None},
        "image_id": "sha256:1",
        "links": [],
        "net": f"{name}_default",
        "ipc_mode": None,
        "networks": {f"{name}_default": {}},
        "secrets": [],
        "volumes_from": [],
    }  # fmt: skip


def test_ports_as_compose_serializes_them(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a:
    image: x
    ports:
      - "8080:80"
      - 5000
      - "127.0.0.1:9000-9001:90-91/udp"
      - "6000-6010:6000"
      - {target: 81, published: "8181", protocol: tcp, mode: host}
""")  # fmt: skip
    assert config_dict(loaded, "a")["options"]["ports"] == [
        [80, 8080, None, None, None],
        [5000, None, None, None, None],
        [90, 9000, "udp", None, "127.0.0.1"],
        [91, 9001, "udp", None, "127.0.0.1"],
        [6000, "6000-6010", None, None, None],
        [81, 8181, "tcp", "host", None],
    ]


def test_volumes_as_compose_serializes_them(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a:
    image: x
    volumes:
      - ./d/../data:/data:ro
      - db:/db
      - /anon
      - {type: volume, source: db, target: /db2, volume: {nocopy: true}}
      - {type: bind, source: ./src, target: /src, read_only: true}
      - {type: tmpfs, target: /t, tmpfs: {size: 1k}}
volumes:
  db:
""")  # fmt: skip
    name = loaded.project.name
    assert config_dict(loaded, "a")["options"]["volumes"] == [
        [str(tmp_path / "data"), "/data", "ro"],
        [f"{name}_db", "/db", "rw"],
        [None, "/anon", "rw"],
        {"type": "volume", "source": f"{name}_db", "target": "/db2", "volume": {"nocopy": True}},
        {"type": "bind", "source": str(tmp_path / "src"), "target": "/src", "read_only": True},
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": 1024}},
    ]


def test_environment_labels_restart_deploy(tmp_path: Path) -> None:
    (tmp_path / "e.env").write_text("FROM_FILE=1\nOVER=file\n")
    loaded = load(tmp_path, """
services:
  a:
    image: x
    env_file: e.env
    environment: {OVER: mine, NUM: 1, FROM_SHELL: }
    labels: [plain, k=v]
    restart: on-failure:3
    deploy:
      restart_policy: {condition: any}
      resources: {limits: {cpus: "0.5"}, reservations: {memory: 10M}}
    healthcheck: {test: "true", interval: 1m30s, disable: false}
    depends_on: [b]
  b:
    image: x
    network_mode: host
""", env={"FROM_SHELL": "shell"})  # fmt: skip
    options = config_dict(loaded, "a")["options"]
    assert options["environment"] == {"FROM_FILE": "1", "OVER": "mine", "NUM": 1,
                                      "FROM_SHELL": "shell"}  # fmt: skip
    assert "env_file" not in options
    assert options["labels"] == {"plain": "", "k": "v"}
    assert options["restart"] == {"Name": "always", "MaximumRetryCount": 0}
    assert options["cpus"] == 0.5
    assert options["mem_limit"] is None
    assert options["mem_reservation"] == "10M"
    assert "deploy" not in options
    assert options["healthcheck"] == {"test": ["NONE"], "interval": 90_000_000_000}
    assert options["depends_on"] == {"b": {"condition": "service_started"}}
    b = config_dict(loaded, "b")
    assert (b["net"], b["networks"]) == ("host", {})


def test_network_order_and_priority(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a: {image: x, networks: [zeta, alpha]}
  b: {image: x, networks: {zeta: {priority: 10}, alpha: {aliases: [al]}}}
networks: {zeta: {}, alpha: {}}
""")  # fmt: skip
    name = loaded.project.name
    assert config_dict(loaded, "a")["net"] == f"{name}_alpha"
    b = config_dict(loaded, "b")
    assert b["net"] == f"{name}_zeta"
    assert b["networks"][f"{name}_alpha"] == {"aliases": ["al"]}


def test_hash_follows_image_and_config(tmp_path: Path) -> None:
    loaded = load(tmp_path, "services:\n  a:\n    image: x\n    x-tag: 1\n")

    def h(raw: dict[str, Any], image_id: str | None) -> str:
        return config_hash(loaded.project, "a", raw, loaded.environment, image_id)

    raw = loaded.raw_services["a"]
    base = h(raw, "sha256:1")
    assert base == json_hash(config_dict(loaded, "a"))
    assert h(raw, "sha256:2") != base
    assert h(raw, None) != base
    assert h({**raw, "x-tag": 2}, "sha256:1") != base  # 1.29 hashes extensions too
    assert h(json.loads(json.dumps(raw)), "sha256:1") == base
