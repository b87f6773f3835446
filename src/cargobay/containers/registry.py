"""Ask a registry (Distribution API v2) for the digest a tag points at, over httpx.

``HEAD /v2/<name>/manifests/<tag>`` with an ``Accept`` header listing the manifest
types the Engine itself asks for (Docker v2 schema 2, manifest lists, OCI manifest and
index) answers ``Docker-Content-Digest``: the same digest the Engine records in an
image's ``RepoDigests`` when it pulls that tag, so comparing the two says whether an
update is available.  Registries that omit the header on HEAD get a GET, whose body is
hashed.  A ``401`` with a ``WWW-Authenticate: Bearer realm=...`` challenge gets an
anonymous token from the realm (Docker Hub, ghcr.io and most registries allow that for
public images).  Docker Hub's API lives at ``registry-1.docker.io``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable

import httpx

from cargobay.containers.auth import RegistryAuth
from cargobay.containers.reference import DEFAULT_DOMAIN, ImageReference
from cargobay.errors import ImageNotFound, RegistryError

__all__ = ["MANIFEST_ACCEPT", "RegistryClient", "is_loopback", "parse_challenge"]

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y"`` -> ``("bearer", {"realm": "x", "service": "y"})``."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def is_loopback(domain: str) -> bool:
    """``localhost[:port]`` or a loopback address: dockerd talks plain HTTP to these."""
    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 or "]:" in domain else domain
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_host(domain: str) -> str:
    return "registry-1.docker.io" if domain == DEFAULT_DOMAIN else domain


class RegistryClient:
    """Digest look-ups against registries; ``insecure(domain)`` picks plain HTTP."""

    def __init__(
        self,
        *,
        insecure: frozenset[str] | set[str] = frozenset(),
        loopback_insecure: bool = True,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        credentials: Callable[[str], RegistryAuth | None] | None = None,
    ) -> None:
        self._credentials = credentials or (lambda domain: None)
        self._insecure = set(insecure)
        self._loopback_insecure = loopback_insecure
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=True
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def base_url(self, domain: str) -> str:
        plain = domain in self._insecure or (self._loopback_insecure and is_loopback(domain))
        return f"{'http' if plain else 'https'}://{api_host(domain)}"

    async def _token(self, challenge: str, ref: ImageReference) -> str | None:
        scheme, params = parse_challenge(challenge)
        if scheme != "bearer" or "realm" not in params:
            return None
        query = {"scope": params.get("scope") or f"repository:{ref.path}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        auth = self._credentials(ref.domain)
        basic = auth.basic() if auth is not None else None
        if auth is not None and auth.identity_token:
            query["grant_type"] = "refresh_token"  # OAuth2 style: the CLI's identity tokens
        try:
            reply = await self._client.get(params["realm"], params=query, auth=basic)
        except httpx.HTTPError as err:
            raise RegistryError(f"token request to {params['realm']} failed: {err!r}") from err
        if reply.status_code != 200:
            who = "the credentials" if basic else "an anonymous token"
            raise RegistryError(
                f"the registry's token service {params['realm']} refused {who} for "
                f"{ref.familiar()} (HTTP {reply.status_code}); the image may be private: "
                f"`docker login {ref.domain}`"
            )
        body = reply.json()
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None

    async def manifest_digest(self, ref: ImageReference) -> str:
        """The digest the registry serves for ``ref``'s tag (or digest)."""
        url = f"{self.base_url(ref.domain)}/v2/{ref.path}/manifests/{ref.manifest_ref}"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            reply = await self._client.head(url, headers=headers)
            basic: tuple[str, str] | None = None
            if reply.status_code == 401:
                challenge = reply.headers.get("www-authenticate", "")
                scheme, _ = parse_challenge(challenge)
                if scheme == "bearer":
                    token = await self._token(challenge, ref)
                    if token:
                        headers["Authorization"] = f"Bearer {token}"
                        reply = await self._client.head(url, headers=headers)
                else:
                    auth = self._credentials(ref.domain)
                    basic = auth.basic() if auth is not None else None
                    if basic is None:
                        raise RegistryError(
                            f"registry {ref.domain} needs credentials for {ref.familiar()}: "
                            f"`docker login {ref.domain}`"
                        )
                    reply = await self._client.head(url, headers=headers, auth=basic)
                if reply.status_code == 401:
                    raise RegistryError(
                        f"registry {ref.domain} refused the credentials for {ref.familiar()} "
                        f"(HTTP 401); check them with `docker login {ref.domain}`"
                    )
            if reply.status_code == 404:
                raise ImageNotFound(
                    f"{ref.familiar()} is not in registry {ref.domain} (no manifest for "
                    f"{ref.manifest_ref!r})"
                )
            if reply.status_code != 200:
                raise RegistryError(
                    f"registry {ref.domain} answered HTTP {reply.status_code} for the manifest "
                    f"of {ref.familiar()}"
                )
            digest = reply.headers.get("docker-content-digest")
            if digest:
                return str(digest)
            body = await self._client.get(url, headers=headers, auth=basic)
            body.raise_for_status()
            digest = body.headers.get("docker-content-digest")
            return str(digest) if digest else "sha256:" + hashlib.sha256(body.content).hexdigest()
        except httpx.HTTPError as err:
            raise RegistryError(
                f"cannot reach registry {ref.domain} for {ref.familiar()}: {err!r}"
            ) from err
