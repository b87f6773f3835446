"""containers.toml, mirror rewriting, plain-HTTP registries, registry challenges, and the
pull names the Engine is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.images import ImageSummary, pull_name
from cargobay.containers.reference import parse_reference
from cargobay.containers.registry import api_host, is_loopback, parse_challenge
from cargobay.containers.settings import (
    ContainerSettings,
    RegistrySettings,
    config_path,
    load_settings,
)
from cargobay.errors import InvalidInput


def test_config_path() -> None:
    assert config_path({"CARGOBAY_CONTAINERS_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert config_path({"CARGOBAY_HOME": "/h"}) == Path("/h/config/containers.toml")
    assert config_path({"XDG_CONFIG_HOME": "/c", "HOME": "/u"}) == Path(
        "/c/cargobay/containers.toml"
    )
    assert config_path({"HOME": "/u"}) == Path("/u/.config/cargobay/containers.toml")


def test_load_settings(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.toml") == ContainerSettings()
    path = tmp_path / "containers.toml"
    path.write_text(
        'docker_host = "unix:///run/user/1000/docker.sock"\n'
        "[registry]\n"
        'insecure = ["registry.lan:5000"]\n'
        "[registry.mirrors]\n"
        '"index.docker.io" = ["https://mirror.gcr.io/", "docker.m.daocloud.io"]\n'
    )
    settings = load_settings(path)
    assert settings.docker_host == "unix:///run/user/1000/docker.sock"
    assert settings.registry.mirrors == {"docker.io": ["mirror.gcr.io", "docker.m.daocloud.io"]}
    assert settings.registry.is_insecure("registry.lan:5000")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("docker_hots = 1\n", "docker_hots"),
        ("[registry]\nmirrors = 3\n", "registry.mirrors"),
        ("not toml = = 1\n", "cannot read"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "containers.toml"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)


def test_mirror_rewrites() -> None:
    registry = RegistrySettings(
        mirrors={"docker.io": ["mirror.lan:5000", "hub.lan/proxy"], "ghcr.io": ["ghcr.lan"]}
    )
    hub = parse_reference("busybox:1.36")
    assert [str(r) for r in registry.mirrors_for(hub)] == [
        "mirror.lan:5000/library/busybox:1.36",
        "hub.lan/proxy/library/busybox:1.36",
    ]
    ghcr = parse_reference("ghcr.io/org/app@sha256:" + "a" * 64)
    assert [str(r) for r in registry.mirrors_for(ghcr)] == ["ghcr.lan/org/app@sha256:" + "a" * 64]
    assert registry.mirrors_for(parse_reference("quay.io/x/y")) == []


@pytest.mark.parametrize(
    ("domain", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.lan", False),
        ("docker.io", False),
    ],
)
def test_loopback_registries_are_plain_http(domain: str, loopback: bool) -> None:
    assert is_loopback(domain) is loopback
    assert RegistrySettings().is_insecure(domain) is loopback


def test_api_host() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("ghcr.io") == "ghcr.io"


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("busybox", "busybox", "latest"),
        ("busybox:1.36", "busybox", "1.36"),
        ("docker.io/library/busybox:1", "busybox", "1"),
        ("user/app:2", "user/app", "2"),
        ("127.0.0.1:5000/cbt/app:1", "127.0.0.1:5000/cbt/app", "1"),
        ("ghcr.io/o/a:1@sha256:" + "b" * 64, "ghcr.io/o/a", "sha256:" + "b" * 64),
    ],
)
def test_pull_name(text: str, name: str, tag: str) -> None:
    assert pull_name(parse_reference(text)) == (name, tag)


def test_image_summary_drops_none_tags() -> None:
    summary = ImageSummary.from_engine(
        {
            "Id": "sha256:1",
            "RepoTags": ["<none>:<none>"],
            "RepoDigests": ["<none>@<none>"],
            "Created": 5,
            "Size": 10,
            "Labels": None,
        }
    )
    assert summary.repo_tags == []
    assert summary.repo_digests == []
    assert summary.labels == {}
