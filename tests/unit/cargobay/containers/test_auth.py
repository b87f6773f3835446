"""Registry credentials from a Docker config.json (no credential helpers here: those are
processes, tested in tests/integration/containers/test_auth_helper.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cargobay.containers.auth import DockerCredentials, RegistryAuth, normalize_server
from cargobay.errors import RegistryError


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("key", "domain"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://registry.lan:5000/v2/", "registry.lan:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_normalize_server(key: str, domain: str) -> None:
    assert normalize_server(key) == domain


def test_auths_entries() -> None:
    creds = DockerCredentials(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hub:pass")},
                "registry.lan:5000": {"username": "u", "password": "p"},
                "ghcr.io": {"identitytoken": "tok"},
                "empty.lan": {},
            }
        }
    )
    hub = creds.for_domain("docker.io")
    assert hub is not None
    assert (hub.username, hub.password) == ("hubuser", "hub:pass")  # split at the first colon
    lan = creds.for_domain("registry.lan:5000")
    assert lan is not None
    assert lan.basic() == ("u", "p")
    ghcr = creds.for_domain("ghcr.io")
    assert ghcr is not None
    assert ghcr.identity_token == "tok"
    assert ghcr.basic() is None
    assert creds.for_domain("empty.lan") is None
    assert creds.for_domain("quay.io") is None


def test_header_is_urlsafe_base64_json() -> None:
    header = RegistryAuth("u", "p?>", server="r.lan").header()
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "serveraddress": "r.lan",
        "username": "u",
        "password": "p?>",
    }
    token = RegistryAuth(identity_token="t", server="r").header()
    assert json.loads(base64.urlsafe_b64decode(token)) == {
        "serveraddress": "r",
        "identitytoken": "t",
    }


def test_secrets_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(RegistryAuth("u", "hunter2", server="r"))


def test_load(tmp_path: Path) -> None:
    assert DockerCredentials.load({"DOCKER_CONFIG": str(tmp_path)}).for_domain("x") is None
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"x.lan": {"auth": b64("a:b")}}}))
    found = DockerCredentials.load({"DOCKER_CONFIG": str(tmp_path)}).for_domain("x.lan")
    assert found is not None
    assert found.basic() == ("a", "b")
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text("{broken")
    with pytest.raises(RegistryError, match="cannot read Docker credentials"):
        DockerCredentials.load({}, home)


def test_bad_base64() -> None:
    creds = DockerCredentials({"auths": {"x.lan": {"auth": "!!!not base64"}}})
    with pytest.raises(RegistryError, match="not valid base64"):
        creds.for_domain("x.lan")


def test_missing_helper_is_named() -> None:
    creds = DockerCredentials({"credsStore": "cbt-absent-helper"})
    with pytest.raises(RegistryError, match="docker-credential-cbt-absent-helper is not on PATH"):
        creds.for_domain("x.lan")
