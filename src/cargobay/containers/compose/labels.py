"""The labels compose writes on what it creates, and reads back to find its own.

Same keys and values as docker-compose 1.29.2 (and ``docker compose`` v2, which reads
them too): a stack started by one tool is found, listed and managed by the other.
Containers are named ``<project>_<service>_<number>`` as 1.29 names them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "COMPOSE_VERSION",
    "CONFIG_FILES",
    "CONFIG_HASH",
    "CONTAINER_NUMBER",
    "ENVIRONMENT_FILE",
    "NETWORK",
    "ONEOFF",
    "PROJECT",
    "SERVICE",
    "VERSION",
    "VOLUME",
    "WORKING_DIR",
    "container_labels",
    "container_name",
    "network_labels",
    "volume_labels",
]

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
CONTAINER_NUMBER = "com.docker.compose.container-number"
CONFIG_HASH = "com.docker.compose.config-hash"
ONEOFF = "com.docker.compose.oneoff"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
ENVIRONMENT_FILE = "com.docker.compose.project.environment_file"
VERSION = "com.docker.compose.version"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"

COMPOSE_VERSION = "1.29.2"
"""The version label we write: the docker-compose whose hash and labels we reproduce."""


def container_name(project: str, service: str, number: int) -> str:
    return f"{project.lstrip('-_')}_{service}_{number}"


def container_labels(
    *,
    project: str,
    service: str,
    number: int,
    config_hash: str,
    working_dir: str,
    config_files: list[str],
    environment_file: str | None,
    user_labels: Mapping[str, str],
) -> dict[str, str]:
    labels = dict(user_labels)
    labels.update(
        {
            PROJECT: project,
            SERVICE: service,
            ONEOFF: "False",
            WORKING_DIR: working_dir,
            CONFIG_FILES: ",".join(config_files),
            CONTAINER_NUMBER: str(number),
            VERSION: COMPOSE_VERSION,
            CONFIG_HASH: config_hash,
        }
    )
    if environment_file:
        labels[ENVIRONMENT_FILE] = environment_file
    return labels


def network_labels(project: str, key: str, user_labels: Mapping[str, str]) -> dict[str, str]:
    return {**user_labels, PROJECT: project, NETWORK: key, VERSION: COMPOSE_VERSION}


def volume_labels(project: str, key: str, user_labels: Mapping[str, str]) -> dict[str, str]:
    return {**user_labels, PROJECT: project, VOLUME: key, VERSION: COMPOSE_VERSION}
