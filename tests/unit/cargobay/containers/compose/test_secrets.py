"""File secrets: validation, the read-only mount, 1.29's hash entry, export, Swarm spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.compose.export import export_kubernetes, export_swarm
from cargobay.containers.compose.hashing import compose129_config_dict
from cargobay.containers.compose.loader import load_project
from cargobay.containers.compose.spec import container_create_body
from cargobay.containers.compose.swarm import stack_service_spec
from cargobay.errors import ComposeFileError

TEXT = """
services:
  a:
    image: x
    secrets: [token, {source: token, target: other, mode: 0400}, {source: ext, target: /abs}]
secrets:
  token: {file: ./token.txt}
  ext: {external: true}
"""


def test_secrets(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(TEXT)
    (tmp_path / "token.txt").write_text("s3cret\n")
    loaded = load_project(working_dir=tmp_path, env={}, project_name="p")
    project = loaded.project
    token = str(tmp_path / "token.txt")
    assert project.secrets["token"].file == token
    service = project.services["a"]
    assert [s.path for s in service.secrets] == ["/run/secrets/token", "/run/secrets/other",
                                                 "/abs"]  # fmt: skip
    mounts = container_create_body(project, service, 1, config_hash="h", environment={}).body[
        "HostConfig"
    ]["Mounts"]
    assert {"Type": "bind", "Source": token, "Target": "/run/secrets/token", "ReadOnly": True} in (
        mounts
    )
    assert not [m for m in mounts if m["Target"] == "/abs"]  # external: Swarm only
    hashed = compose129_config_dict(project, "a", loaded.raw_services["a"], {}, None)
    assert hashed["secrets"] == [
        {"secret": ["token", None, None, None, None, None], "file": token},
        {"secret": ["token", "other", None, None, 256, None], "file": token},
    ]
    assert "secrets" not in hashed["options"]
    swarm = export_swarm(loaded).documents[0]
    assert swarm["secrets"]["token"] == {"file": token}
    assert swarm["services"]["a"]["secrets"][1] == {"source": "token", "target": "other",
                                                     "mode": 256}  # fmt: skip
    assert any("secrets" in w for w in export_kubernetes(loaded).warnings)
    spec = stack_service_spec(project, service, {})
    assert spec["TaskTemplate"]["ContainerSpec"]["Secrets"][1] == {
        "SecretName": "p_token",
        "File": {"Name": "other", "UID": "0", "GID": "0", "Mode": 256},
    }


@pytest.mark.parametrize(
    ("secrets", "words"),
    [
        ("{}", "not defined"),
        ("{token: {file: ./missing.txt}}", "does not exist"),
        ("{token: {environment: TOKEN}}", "environment variable"),
    ],
)
def test_secret_errors(tmp_path: Path, secrets: str, words: str) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  a:\n    image: x\n    secrets: [token]\nsecrets: {secrets}\n"
    )
    with pytest.raises(ComposeFileError) as info:
        load_project(working_dir=tmp_path, env={})
    assert info.value.service == "a"
    assert info.value.key == "secrets[0]"
    assert words in str(info.value)


def test_config_document_keeps_secrets(tmp_path: Path) -> None:
    from cargobay.containers.compose.export import config_document, dump_yaml

    (tmp_path / "compose.yaml").write_text(TEXT)
    (tmp_path / "token.txt").write_text("s3cret\n")
    loaded = load_project(working_dir=tmp_path, env={}, project_name="p")
    doc = config_document(loaded)
    assert doc["secrets"] == {"token": {"file": str(tmp_path / "token.txt")},
                              "ext": {"external": True}}  # fmt: skip
    again = tmp_path / "again"
    again.mkdir()
    (again / "compose.yaml").write_text(dump_yaml(doc))
    assert load_project(working_dir=again, env={}).project.secrets == loaded.project.secrets


def test_configs(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a:\n    image: x\n"
        "    configs: [settings, {source: settings, target: /etc/app.conf}]\n"
        "configs:\n  settings: {file: ./app.conf}\n"
    )
    (tmp_path / "app.conf").write_text("level=debug\n")
    loaded = load_project(working_dir=tmp_path, env={}, project_name="p")
    project = loaded.project
    service = project.services["a"]
    assert [c.path for c in service.configs] == ["/settings", "/etc/app.conf"]
    mounts = container_create_body(project, service, 1, config_hash="h", environment={}).body[
        "HostConfig"
    ]["Mounts"]
    assert [m["Target"] for m in mounts] == ["/settings", "/etc/app.conf"]
    # docker-compose 1.29 ignores configs (Swarm only): not in its hash
    hashed = compose129_config_dict(project, "a", loaded.raw_services["a"], {}, None)
    assert "configs" not in hashed["options"]
    assert export_swarm(loaded).documents[0]["configs"] == {
        "settings": {"file": str(tmp_path / "app.conf")}
    }
    spec = stack_service_spec(project, service, {})
    assert spec["TaskTemplate"]["ContainerSpec"]["Configs"][1]["File"]["Name"] == "/etc/app.conf"
    (tmp_path / "app.conf").unlink()
    with pytest.raises(ComposeFileError, match=r"config 'settings': file .* does not exist"):
        load_project(working_dir=tmp_path, env={})
