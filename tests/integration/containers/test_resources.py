"""Typed summaries and the idempotent ensure/discard helpers against dockerd."""

from __future__ import annotations

import pytest

from cargobay.containers.engine import DockerEngine
from cargobay.containers.resources import (
    discard_container,
    discard_network,
    discard_volume,
    ensure_network,
    ensure_volume,
    list_containers,
    list_networks,
    list_volumes,
)
from cargobay.errors import Conflict

pytestmark = pytest.mark.integration


async def test_ensure_and_discard_network(engine: DockerEngine, unique_name: str) -> None:
    labels = {"com.docker.compose.project": unique_name, "com.docker.compose.network": "default"}
    nid, created = await ensure_network(engine, unique_name, labels=labels, check_labels=labels)
    assert created
    again, created = await ensure_network(engine, unique_name, labels=labels, check_labels=labels)
    assert (again, created) == (nid, False)
    with pytest.raises(Conflict, match=r"network '.*' already exists but was not created"):
        await ensure_network(
            engine, unique_name, check_labels={"com.docker.compose.project": "other"}
        )
    [summary] = await list_networks(engine, labels={"com.docker.compose.project": unique_name})
    assert (summary.id, summary.name, summary.driver) == (nid, unique_name, "bridge")
    assert summary.labels == labels
    assert await discard_network(engine, unique_name) is True
    assert await discard_network(engine, unique_name) is False


async def test_ensure_and_discard_volume(engine: DockerEngine, unique_name: str) -> None:
    labels = {"com.docker.compose.project": unique_name}
    assert await ensure_volume(engine, unique_name, labels=labels) == (unique_name, True)
    assert await ensure_volume(engine, unique_name, check_labels=labels) == (unique_name, False)
    with pytest.raises(Conflict, match="expected 'x'"):
        await ensure_volume(engine, unique_name, check_labels={"com.docker.compose.project": "x"})
    [summary] = await list_volumes(engine, labels=labels)
    assert summary.name == unique_name
    assert summary.mountpoint
    assert await discard_volume(engine, unique_name) is True
    assert await discard_volume(engine, unique_name) is False


async def test_container_summaries(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    labels = {"com.docker.compose.project": unique_name, "com.docker.compose.service": "web"}
    cid = await engine.create_container(
        unique_name,
        {
            "Image": busybox_image,
            "Cmd": ["sleep", "30"],
            "Labels": labels,
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
        },
    )
    try:
        assert await list_containers(engine, labels=labels) == []  # created, not running
        await engine.start_container(cid)
        [summary] = await list_containers(engine, labels=labels)
        assert (summary.id, summary.name, summary.image) == (cid, unique_name, busybox_image)
        assert summary.state == "running"
        assert (summary.project, summary.service) == (unique_name, "web")
        [port] = summary.ports
        assert (port.private, port.ip, port.protocol) == (80, "127.0.0.1", "tcp")
        assert port.public is not None
        assert port.public > 0
    finally:
        assert await discard_container(engine, cid) is True
    assert await discard_container(engine, cid) is False
