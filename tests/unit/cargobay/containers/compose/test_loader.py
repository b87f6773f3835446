"""Loading projects: files, .env, merge, profiles, project names, and errors that name
the file, the service and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.compose.loader import (
    bare_project,
    find_cycle,
    load_project,
    normalize_project_name,
)
from cargobay.errors import ComposeFileError, InvalidInput


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **kwargs: object):  # type: ignore[no-untyped-def]
    write(tmp_path / "compose.yaml", text)
    kwargs.setdefault("env", {})
    return load_project(working_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_full_service_normal_form(tmp_path: Path) -> None:
    write(tmp_path / "app.env", "FROM_FILE=1\n")
    loaded = load_text(
        tmp_path,
        """
services:
  web:
    image: busybox:${TAG:-1}
    environment: [A=1, B]
    env_file: app.env
    labels: {n: 1}
    ports: ["8080:80", {target: 443, published: 8443}]
    volumes: [./data:/data:ro, db:/db, {type: tmpfs, target: /t, tmpfs: {size: 1m}}]
    networks: {front: {aliases: [w], ipv4_address: 10.5.0.5}}
    depends_on: {db: {condition: service_healthy}}
    healthcheck: {test: "true", interval: 2s, retries: 3}
    restart: on-failure:2
    container_name: the-web
    mac_address: 02:42:ac:11:00:02
    stop_grace_period: 1m
    user: "1000"
    working_dir: /w
    extra_hosts: {h: 10.0.0.1}
    deploy: {resources: {limits: {cpus: "0.5", memory: 64M}}}
    x-note: ignored
  db:
    image: busybox
    healthcheck: {test: ["CMD", "true"]}
networks: {front: {ipam: {config: [{subnet: 10.5.0.0/24}]}}}
volumes: {db: }
x-top: {kept: true}
""",
    )
    project = loaded.project
    web = project.services["web"]
    assert web.image == "busybox:1"
    assert web.environment == {"A": "1", "B": None}
    assert web.env_file == [str(tmp_path / "app.env")]
    assert web.labels == {"n": "1"}
    assert [(p.published, p.target) for p in web.ports] == [("8080", 80), ("8443", 443)]
    assert web.volumes[0].source == str(tmp_path / "data")
    assert web.volumes[0].read_only
    assert web.volumes[2].tmpfs is not None
    assert web.volumes[2].tmpfs.size == 2**20
    assert web.networks["front"].aliases == ["w"]
    assert web.depends_on["db"].condition == "service_healthy"
    assert web.healthcheck is not None
    assert web.healthcheck.test == ["CMD-SHELL", "true"]
    assert web.healthcheck.interval == 2.0
    assert web.stop_grace_period == 60.0
    assert web.extra_hosts == ["h:10.0.0.1"]
    assert web.deploy is not None
    assert web.deploy.resources is not None
    assert web.deploy.resources.limits is not None
    assert web.deploy.resources.limits.memory == 64 * 2**20
    assert project.extensions == {"x-top": {"kept": True}}
    assert loaded.raw_services["web"]["x-note"] == "ignored"  # kept for the hash
    assert project.network_name("front") == f"{project.name}_front"
    assert project.volume_name("db") == f"{project.name}_db"


def test_env_file_and_environment_precedence(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TAG=from-dotenv\nOTHER=dotenv\n")
    loaded = load_text(
        tmp_path,
        "services:\n  a:\n    image: img:${TAG}\n    command: echo ${OTHER}\n",
        env={"TAG": "from-shell"},
    )
    assert loaded.project.services["a"].image == "img:from-shell"
    assert loaded.project.services["a"].command == "echo dotenv"
    assert loaded.env_file == str(tmp_path / ".env")


def test_explicit_env_file(tmp_path: Path) -> None:
    write(tmp_path / "custom.env", "TAG=custom\n")
    loaded = load_text(tmp_path, "services:\n  a:\n    image: img:${TAG}\n",
                       env_file="custom.env")  # fmt: skip
    assert loaded.project.services["a"].image == "img:custom"


def test_missing_variable_is_a_warning(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "services:\n  a:\n    image: img${NOPE}\n")
    assert loaded.project.services["a"].image == "img"
    assert any("NOPE" in warning for warning in loaded.warnings)


@pytest.mark.parametrize(
    ("given", "env", "top", "expected"),
    [
        ("My.Proj", {"COMPOSE_PROJECT_NAME": "env"}, "top", "myproj"),
        (None, {"COMPOSE_PROJECT_NAME": "From_Env"}, "top", "from_env"),
        (None, {}, "Top-Name", "top-name"),
        (None, {}, None, "dir_name-1"),
    ],
)
def test_project_name_sources(
    tmp_path: Path, given: str | None, env: dict[str, str], top: str | None, expected: str
) -> None:
    directory = tmp_path / "Dir_Name-1"
    text = (f"name: {top}\n" if top else "") + "services:\n  a:\n    image: x\n"
    write(directory / "compose.yaml", text)
    loaded = load_project(working_dir=directory, env=env, project_name=given)
    assert loaded.project.name == expected


def test_normalize_project_name() -> None:
    assert normalize_project_name("__My App!") == "myapp"
    assert normalize_project_name("a-b_c9") == "a-b_c9"


def test_default_file_names_and_override(tmp_path: Path) -> None:
    base = "services:\n  a:\n    image: x\n    ports: ['1:1']\n"
    write(tmp_path / "docker-compose.yml", base)
    override = "services:\n  a:\n    image: y\n    ports: ['2:2']\n    environment: [K=v]\n"
    write(tmp_path / "docker-compose.override.yml", override)
    loaded = load_project(working_dir=tmp_path, env={})
    service = loaded.project.services["a"]
    assert service.image == "y"
    assert [p.target for p in service.ports] == [1, 2]
    assert service.environment == {"K": "v"}
    assert len(loaded.project.config_files) == 2


def test_merge_of_several_files(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", """
services:
  a:
    image: x
    environment: {A: "1", B: "1"}
    volumes: ["/h1:/data", "/h2:/other"]
    labels: [l1=1]
    command: base
""")  # fmt: skip
    write(tmp_path / "over.yml", """
services:
  a:
    environment: [B=2, C=3]
    volumes: ["/h3:/data"]
    labels: {l2: "2"}
    command: [over]
  b:
    image: z
""")  # fmt: skip
    loaded = load_project(["base.yml", "over.yml"], working_dir=tmp_path, env={})
    a = loaded.project.services["a"]
    assert a.environment == {"A": "1", "B": "2", "C": "3"}
    assert sorted((v.source, v.target) for v in a.volumes) == [("/h2", "/other"),
                                                                ("/h3", "/data")]  # fmt: skip
    assert a.labels == {"l1": "1", "l2": "2"}
    assert a.command == ["over"]
    assert set(loaded.project.services) == {"a", "b"}


def test_profiles(tmp_path: Path) -> None:
    text = """
services:
  a: {image: x}
  dbg: {image: x, profiles: [debug]}
"""
    assert set(load_text(tmp_path, text).project.services) == {"a"}
    assert set(load_text(tmp_path, text, profiles=["debug"]).project.services) == {"a", "dbg"}
    loaded = load_text(tmp_path, text, env={"COMPOSE_PROFILES": "debug"})
    assert set(loaded.project.services) == {"a", "dbg"}


def error_of(tmp_path: Path, text: str, name: str = "compose.yaml") -> ComposeFileError:
    write(tmp_path / name, text)
    with pytest.raises(ComposeFileError) as info:
        load_project([name], working_dir=tmp_path, env={})
    assert isinstance(info.value, InvalidInput)
    assert str(tmp_path / name) in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("text", "service", "key", "words"),
    [
        ("services:\n  web:\n    image: x\n    imagee: y\n", "web", "imagee", "unknown key"),
        (
            "services:\n  web:\n    image: x\n    ports: ['99999:80']\n",
            "web",
            "ports",
            "out of range",
        ),
        (
            "services:\n  web:\n    image: x\n    restart: sometimes\n",
            "web",
            "restart",
            "restart policy",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck: {retries: many}\n",
            "web",
            "healthcheck.retries",
            "integer",
        ),
        ("services:\n  web:\n    image: [x]\n", "web", "image", "string"),
        ("services:\n  web: {}\n", "web", "image", "'image' or a 'build'"),
        (
            "services:\n  web:\n    image: x\n    depends_on: [db]\n",
            "web",
            "depends_on.db",
            "undefined service",
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [nope]\n",
            "web",
            "networks.nope",
            "not defined",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: ['vol:/v']\n",
            "web",
            "volumes[0]",
            "not defined",
        ),
        (
            "services:\n  web:\n    image: x\n    stop_grace_period: soon\n",
            "web",
            "stop_grace_period",
            "duration",
        ),
        ("services:\n  web:\n    image: x\n    mac_address: nope\n", "web", "mac_address", "MAC"),
        ("services:\n  web:\n    image: x\n    command: ${X:?set X}\n", "web", "command", "set X"),
        (
            "services:\n  web:\n    image: x\n    container_name: c\n    deploy: {replicas: 2}\n",
            "web",
            "container_name",
            "unique",
        ),
        (
            "services:\n  web:\n    image: x\n    env_file: missing.env\n",
            "web",
            "env_file",
            "does not exist",
        ),
    ],
)
def test_errors_name_file_service_and_key(
    tmp_path: Path, text: str, service: str, key: str, words: str
) -> None:
    err = error_of(tmp_path, text)
    assert err.service == service
    assert err.key == key
    assert words in str(err)
    assert f"service '{service}'" in str(err)


def test_error_in_an_override_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "services:\n  web:\n    image: x\n")
    write(tmp_path / "b.yml", "services:\n  web:\n    portz: []\n")
    with pytest.raises(ComposeFileError) as info:
        load_project(["a.yml", "b.yml"], working_dir=tmp_path, env={})
    assert info.value.file == str(tmp_path / "b.yml")
    assert info.value.key == "portz"


def test_top_level_errors(tmp_path: Path) -> None:
    assert "unknown key" in str(error_of(tmp_path, "servics: {}\n"))
    assert "YAML" in str(error_of(tmp_path, "services: [\n"))
    assert "mapping" in str(error_of(tmp_path, "- a\n"))
    err = error_of(tmp_path, "services: {}\nnetworks:\n  n: {drivr: x}\n")
    assert err.key == "networks.n.drivr"


def test_dependency_cycle(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
services:
  a: {image: x, depends_on: [b]}
  b: {image: x, depends_on: {c: {condition: service_healthy}}}
  c: {image: x, depends_on: [a]}
""")  # fmt: skip
    assert "cycle" in str(err)
    assert "a -> b -> c -> a" in str(err)
    assert err.service == "a"


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": []}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]


def test_no_compose_file(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError, match="no compose file"):
        load_project(working_dir=tmp_path, env={})


def test_bare_project_is_known_by_name_only(tmp_path: Path) -> None:
    loaded = bare_project("My_Stack", tmp_path)
    assert loaded.project.name == "my_stack"
    assert loaded.project.services == {}
    with pytest.raises(ComposeFileError, match="empty"):
        bare_project("!!!")


def test_spec_keys_not_supported_yet_say_so(tmp_path: Path) -> None:
    err = error_of(tmp_path, "services:\n  web:\n    image: x\n    volumes_from: [s]\n")
    assert err.key == "volumes_from"
    assert "not supported by cargobay compose yet" in str(err)


def test_compose_file_variable(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "services:\n  a: {image: x}\n")
    write(tmp_path / "b.yml", "services:\n  b: {image: y}\n")
    loaded = load_project(working_dir=tmp_path, env={"COMPOSE_FILE": "a.yml:b.yml"})
    assert set(loaded.project.services) == {"a", "b"}
    loaded = load_project(
        working_dir=tmp_path, env={"COMPOSE_FILE": "a.yml;b.yml", "COMPOSE_PATH_SEPARATOR": ";"}
    )
    assert set(loaded.project.services) == {"a", "b"}
