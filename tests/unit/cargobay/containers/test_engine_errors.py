"""How Engine errors become typed CargoBay errors, and label filters."""

from __future__ import annotations

import aiodocker
import pytest
from aiodocker.exceptions import DockerStreamError

from cargobay.containers.engine import label_filters, map_docker_error
from cargobay.errors import (
    ERROR_TYPES,
    CargoBayError,
    ContainerConflict,
    ContainerError,
    ContainerNotFound,
    EngineError,
    EngineStreamError,
    EngineUnavailable,
    ImageNotFound,
    InvalidReference,
    NetworkNotFound,
    NotFound,
    VolumeNotFound,
)


@pytest.mark.parametrize(
    ("status", "message", "kind", "expected"),
    [
        (404, "No such container: x", "container", ContainerNotFound),
        (404, "No such image: busybox:1", "image", ImageNotFound),
        (404, "network x not found", "network", NetworkNotFound),
        (404, "get x: no such volume", "volume", VolumeNotFound),
        (404, "page not found", "engine", EngineError),
        (
            409,
            'Conflict. The container name "/x" is already in use',
            "container",
            ContainerConflict,
        ),
        (
            400,
            "invalid reference format: repository name must be lowercase",
            "image",
            InvalidReference,
        ),
        (500, "driver failed programming external connectivity", "container", EngineError),
        (900, "Cannot connect to Docker Engine via unix:///x", "engine", EngineUnavailable),
    ],
)
def test_mapping(status: int, message: str, kind: str, expected: type[ContainerError]) -> None:
    err = map_docker_error(aiodocker.DockerError(status, message), "do a thing", kind)  # type: ignore[arg-type]
    assert type(err) is expected
    assert str(err).startswith("do a thing: ")
    assert message.split(":")[0] in str(err)


def test_engine_error_keeps_status_and_message() -> None:
    err = map_docker_error(aiodocker.DockerError(500, "boom"), "start x", "container")
    assert isinstance(err, EngineError)
    assert err.engine_status == 500
    assert err.engine_message == "boom"
    assert "answered 500" in str(err)


def test_stream_error() -> None:
    err = map_docker_error(DockerStreamError("denied: requested access"), "push x", "image")
    assert isinstance(err, EngineStreamError)
    assert err.engine_status == 0


def test_not_found_errors_are_not_found_and_round_trip_by_code() -> None:
    for cls in (ContainerNotFound, ImageNotFound, NetworkNotFound, VolumeNotFound):
        assert issubclass(cls, NotFound)
        assert cls.status == 404
    for kind in (EngineUnavailable, EngineError, EngineStreamError, InvalidReference):
        assert ERROR_TYPES[kind.code] is kind
        rebuilt = ERROR_TYPES[kind.code]("from the daemon")  # what the SDK does
        assert isinstance(rebuilt, CargoBayError)
        assert str(rebuilt) == "from the daemon"
    assert EngineUnavailable.status == 503
    assert InvalidReference.status == 400


def test_label_filters() -> None:
    assert label_filters(None) == []
    assert label_filters({"a": "1", "b": None}) == ["a=1", "b"]
    assert label_filters(["x=y", "z"]) == ["x=y", "z"]
