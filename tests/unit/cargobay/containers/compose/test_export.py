"""``config``, ``export --swarm`` and ``export --kubernetes``: structure and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cargobay.containers.compose.export import (
    config_document,
    dump_yaml,
    export_kubernetes,
    export_swarm,
)
from cargobay.containers.compose.loader import LoadedProject, load_project
from cargobay.containers.compose.swarm import NAMESPACE, stack_service_spec
from tests.support import require

TEXT = """
services:
  web:
    build: ./ctx
    command: ["httpd", "-f"]
    entrypoint: /bin/sh -c
    container_name: web-1
    restart: on-failure:3
    environment: [A=1, FROM_SHELL]
    ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp"]
    volumes: ["./src:/src:ro", "data:/data", {type: tmpfs, target: /t, tmpfs: {size: 1k}}]
    depends_on: {db: {condition: service_healthy}}
    healthcheck: {test: ["CMD", "true"], interval: 10s, timeout: 2s, retries: 3}
    stop_grace_period: 5s
    user: "1000:1000"
    extra_hosts: ["h:10.0.0.1"]
    networks: {front: {aliases: [www]}}
    mac_address: 02:42:ac:11:00:02
  db:
    image: db:1
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.5", memory: 64M}, reservations: {memory: 32M}}
      restart_policy: {condition: any}
    volumes: ["data:/var/lib/db"]
networks:
  front: {driver: bridge}
volumes:
  data: {}
x-meta: {owner: me}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedProject:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "compose.yaml").write_text(TEXT)
    return load_project(working_dir=tmp_path, env={"FROM_SHELL": "s"}, project_name="shop")


def test_config_document_round_trips_through_the_loader(
    loaded: LoadedProject, tmp_path: Path
) -> None:
    doc = config_document(loaded)
    assert doc["name"] == "shop"
    assert doc["x-meta"] == {"owner": "me"}
    web = doc["services"]["web"]
    assert web["stop_grace_period"] == "5s"
    assert web["healthcheck"]["interval"] == "10s"
    assert web["volumes"][0]["source"] == str(tmp_path / "src")
    again = tmp_path / "again"
    again.mkdir()
    (again / "compose.yaml").write_text(dump_yaml(doc))
    reloaded = load_project(working_dir=again, env={"FROM_SHELL": "s"})
    assert reloaded.project.name == "shop"
    assert reloaded.project.services == loaded.project.services


def test_swarm_file(loaded: LoadedProject) -> None:
    result = export_swarm(loaded)
    [doc] = result.documents
    assert doc["version"] == "3.8"
    web, db = doc["services"]["web"], doc["services"]["db"]
    assert web["image"] == "shop_web"
    assert "container_name" not in web
    assert "build" not in web
    assert "depends_on" not in web
    assert web["deploy"]["restart_policy"] == {"condition": "on-failure", "max_attempts": 3}
    assert web["environment"] == {"A": "1", "FROM_SHELL": "s"}
    assert web["ports"][0] == {"target": 80, "protocol": "tcp", "mode": "ingress",
                               "published": 8080}  # fmt: skip
    assert web["networks"] == {"front": {"aliases": ["www"]}}
    assert db["deploy"]["replicas"] == 2
    assert db["deploy"]["resources"]["limits"] == {"cpus": "0.5", "memory": str(64 * 2**20)}
    assert db["deploy"]["restart_policy"] == {"condition": "any"}
    assert doc["networks"]["front"]["driver"] == "overlay"
    text = "\n".join(result.warnings)
    for word in ("'build'", "'container_name'", "'depends_on'", "'restart: on-failure:3'",
                 "host IP 127.0.0.1", "bind mount", "'mac_address'", "driver bridge"):  # fmt: skip
        assert word in text, word
    assert yaml.safe_load(result.yaml()) == doc


def test_kubernetes_manifests(loaded: LoadedProject) -> None:
    result = export_kubernetes(loaded, storage="2Gi", namespace="shop")
    kinds = [(d["kind"], d["metadata"]["name"]) for d in result.documents]
    assert kinds == [("PersistentVolumeClaim", "data"), ("Deployment", "web"),
                     ("Service", "web"), ("Deployment", "db")]  # fmt: skip
    pvc, web, web_svc, db = result.documents
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert all(d["metadata"]["namespace"] == "shop" for d in result.documents)
    pod = web["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    assert container["args"] == ["httpd", "-f"]
    assert {"name": "A", "value": "1"} in container["env"]
    assert container["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000}
    assert container["livenessProbe"]["exec"]["command"] == ["true"]
    assert container["livenessProbe"]["periodSeconds"] == 10
    assert {"name": "v1", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "v1", "persistentVolumeClaim": {"claimName": "data"}} in pod["volumes"]
    assert {"name": "v2", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert pod["hostAliases"] == [{"ip": "10.0.0.1", "hostnames": ["h"]}]
    assert web["spec"]["selector"]["matchLabels"] == web_svc["spec"]["selector"]
    assert {"name": "tcp-80", "port": 8080, "targetPort": 80, "protocol": "TCP"} in web_svc["spec"][
        "ports"
    ]
    assert db["spec"]["replicas"] == 2
    assert db["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "0.5", "memory": str(64 * 2**20)},
        "requests": {"memory": str(32 * 2**20)},
    }
    text = "\n".join(result.warnings)
    assert "'build'" in text
    assert "hostPath" in text
    assert "depends_on" in text
    assert "&id" not in result.yaml()  # no YAML anchors
    assert next(d["kind"] for d in yaml.safe_load_all(result.yaml())) == "PersistentVolumeClaim"


def test_stack_service_spec(loaded: LoadedProject) -> None:
    project = loaded.project
    spec = stack_service_spec(project, project.services["db"], loaded.environment)
    assert spec["Name"] == "shop_db"
    assert spec["Labels"][NAMESPACE] == "shop"
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    task = spec["TaskTemplate"]
    assert task["ContainerSpec"]["Labels"][NAMESPACE] == "shop"
    assert task["ContainerSpec"]["Mounts"][0]["Source"] == "shop_data"
    assert task["Resources"]["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 2**20}
    assert task["RestartPolicy"] == {"Condition": "any"}
    assert task["Networks"] == [{"Target": "shop_default", "Aliases": ["db"]}]
    web = stack_service_spec(project, project.services["web"], loaded.environment)
    assert web["TaskTemplate"]["RestartPolicy"] == {"Condition": "on-failure", "MaxAttempts": 3}
    port = {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress", "PublishedPort": 8080}
    assert web["EndpointSpec"]["Ports"][0] == port
    assert web["TaskTemplate"]["ContainerSpec"]["Hosts"] == ["10.0.0.1 h"]


@pytest.mark.parametrize("version", ["1.27.0", "1.30.0"])
def test_kubernetes_manifests_validate_against_the_schemas(
    loaded: LoadedProject, version: str
) -> None:
    """Every exported document is valid for the Kubernetes API (strict: no unknown field),
    checked with kubernetes-validate's copy of the official JSON schemas."""
    try:
        import kubernetes_validate
    except ImportError:
        require(False, "kubernetes-validate (pip install -e '.[dev]')")

    examples = load_project([Path(__file__).parents[5] / "examples/compose/compose.yaml"], env={})
    for project in (loaded, examples):
        for doc in export_kubernetes(project, namespace="ns").documents:
            kubernetes_validate.validate(doc, version, strict=True)
    broken = export_kubernetes(loaded).documents[1]
    broken["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
