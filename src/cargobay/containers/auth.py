"""Registry credentials the way the Docker CLI keeps them, for pulls and update checks.

``$DOCKER_CONFIG/config.json`` (``~/.docker``) holds them in three ways, looked up in the
CLI's order for a registry domain:

1. ``credHelpers[domain]`` names a helper: ``docker-credential-<name> get`` reads the
   server address on stdin and answers ``{"Username": ..., "Secret": ...}``;
2. ``credsStore`` names the helper for every registry;
3. ``auths[domain]`` with ``auth`` (base64 of ``user:password``) or
   ``username``/``password``, or an ``identitytoken``.

Docker Hub's key is ``https://index.docker.io/v1/``; keys may carry a scheme or a path,
which are ignored.  The Engine wants credentials in the ``X-Registry-Auth`` header as
URL-safe base64 JSON (:meth:`RegistryAuth.header`); registries want them as HTTP Basic
or, behind a Bearer challenge, when fetching a token.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cargobay.containers.reference import DEFAULT_DOMAIN
from cargobay.errors import RegistryError

__all__ = ["DockerCredentials", "RegistryAuth", "normalize_server"]

HUB_SERVER = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    server: str = ""

    def __repr__(self) -> str:  # never show a secret in logs or errors
        return f"RegistryAuth(username={self.username!r}, server={self.server!r})"

    def header(self) -> str:
        """The ``X-Registry-Auth`` value the Engine expects."""
        body: dict[str, str] = {"serveraddress": self.server}
        if self.identity_token:
            body["identitytoken"] = self.identity_token
        else:
            body["username"] = self.username
            body["password"] = self.password
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()

    def basic(self) -> tuple[str, str] | None:
        if self.username or self.password:
            return self.username, self.password
        return None


def normalize_server(key: str) -> str:
    """A config key as a domain: ``https://index.docker.io/v1/`` -> ``docker.io``,
    ``http://r.lan:5000/x`` -> ``r.lan:5000``."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DEFAULT_DOMAIN
    return host


def _server_for(domain: str) -> str:
    return HUB_SERVER if domain == DEFAULT_DOMAIN else domain


class DockerCredentials:
    """Credentials from a Docker config directory (read once, helpers asked on demand)."""

    def __init__(self, config: Mapping[str, object] | None = None) -> None:
        self._config = dict(config or {})

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, home: Path | None = None
    ) -> DockerCredentials:
        env = os.environ if env is None else env
        directory = env.get("DOCKER_CONFIG")
        base = Path(directory) if directory else (home or Path.home()) / ".docker"
        try:
            data = json.loads((base / "config.json").read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as err:
            raise RegistryError(
                f"cannot read Docker credentials from {base / 'config.json'}: {err}"
            ) from err
        return cls(data if isinstance(data, dict) else {})

    def _helper(self, domain: str) -> str | None:
        helpers = self._config.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if normalize_server(str(key)) == domain:
                    return str(name)
        store = self._config.get("credsStore")
        return str(store) if store else None

    def _from_helper(self, name: str, domain: str) -> RegistryAuth | None:
        program = shutil.which(f"docker-credential-{name}")
        if program is None:
            raise RegistryError(
                f"the Docker config names credential helper {name!r} but "
                f"docker-credential-{name} is not on PATH"
            )
        server = _server_for(domain)
        try:
            done = subprocess.run(
                [program, "get"],
                input=server,
                capture_output=True,
                text=True,
                timeout=HELPER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RegistryError(f"docker-credential-{name} get failed for {server}: {err}") from err
        if done.returncode != 0:
            if "not found" in (done.stdout + done.stderr).lower():
                return None  # the helper has nothing for this registry
            raise RegistryError(
                f"docker-credential-{name} get failed for {server}: {done.stderr.strip()[:200]}"
            )
        try:
            data = json.loads(done.stdout)
        except ValueError as err:
            raise RegistryError(
                f"docker-credential-{name} answered something that is not JSON"
            ) from err
        username, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
        if username == "<token>":
            return RegistryAuth(identity_token=secret, server=server)
        return RegistryAuth(username, secret, server=server)

    def _from_auths(self, domain: str) -> RegistryAuth | None:
        auths = self._config.get("auths")
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if normalize_server(str(key)) != domain or not isinstance(entry, dict):
                continue
            username, password = str(entry.get("username", "")), str(entry.get("password", ""))
            if entry.get("auth"):
                try:
                    decoded = base64.b64decode(str(entry["auth"])).decode()
                except (ValueError, UnicodeDecodeError) as err:
                    raise RegistryError(
                        f"the Docker config's credentials for {key} are not valid base64"
                    ) from err
                username, _, password = decoded.partition(":")
            token = str(entry.get("identitytoken", ""))
            if username or password or token:
                return RegistryAuth(username, password, token, server=str(key))
        return None

    def for_domain(self, domain: str) -> RegistryAuth | None:
        """The credentials for a registry domain, ``None`` for anonymous access."""
        helper = self._helper(domain)
        if helper:
            found = self._from_helper(helper, domain)
            if found is not None:
                return found
        return self._from_auths(domain)
