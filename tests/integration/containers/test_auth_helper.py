"""Docker credential helpers are programs: a real one (a shell script on PATH) answers
``get`` the way docker-credential-* helpers do."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.auth import DockerCredentials
from cargobay.errors import RegistryError

pytestmark = pytest.mark.integration

HELPER = """#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"'$server'","Username":"hub","Secret":"s1"}' ;;
  token.lan) echo '{"ServerURL":"token.lan","Username":"<token>","Secret":"tok"}' ;;
  broken.lan) echo "keychain locked" >&2; exit 1 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "docker-credential-cbtest"
    script.write_text(HELPER)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    return script


def test_helper_answers(helper_path: Path) -> None:
    creds = DockerCredentials(
        {
            "credHelpers": {"token.lan": "cbtest"},
            "credsStore": "cbtest",
            "auths": {"fallback.lan": {"username": "f", "password": "g"}},
        }
    )
    hub = creds.for_domain("docker.io")
    assert hub is not None
    assert hub.basic() == ("hub", "s1")
    assert hub.server == "https://index.docker.io/v1/"
    token = creds.for_domain("token.lan")
    assert token is not None
    assert token.identity_token == "tok"
    # the helper has nothing: the plain auths entry is used, else anonymous
    fallback = creds.for_domain("fallback.lan")
    assert fallback is not None
    assert fallback.basic() == ("f", "g")
    assert creds.for_domain("other.lan") is None
    with pytest.raises(RegistryError, match="keychain locked"):
        creds.for_domain("broken.lan")
