"""Bearer token authentication, the way Docker Hub and ghcr.io do it, on loopback.

docker-registry runs with ``auth: token``: it answers 401 with ``WWW-Authenticate:
Bearer realm=...,service=...,scope=...`` and accepts RS256 JWTs signed by a key whose
certificate is in its ``rootcertbundle``.  The token service is a small HTTP server in
this test (made with ``cryptography``); it grants what is asked and records each
request.  dockerd pushes and pulls through it, and the update check gets its token the
same way (anonymously, and with Basic credentials when the Docker config has some).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from cargobay.containers.auth import DockerCredentials
from cargobay.containers.engine import DockerEngine
from cargobay.containers.images import ImageService
from cargobay.errors import RegistryError
from tests.integration.containers.conftest import LocalRegistry, run_registry

pytestmark = pytest.mark.integration

SERVICE = "cargobay-test-registry"
ISSUER = "cargobay-test-token-service"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    service: str
    scopes: list[str]
    authorization: str


@dataclass
class TokenService:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    refuse_basic: bool = False
    requests: list[TokenRequest] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name_actions = scope.split(":", 1)
            name, _, actions = name_actions.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode().split("\r\n")
            _, target, _ = request_line.split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in header_lines if line)
            }
            query = parse_qs(urlsplit(target).query)
            record = TokenRequest(
                service=query.get("service", [""])[0],
                scopes=query.get("scope", []),
                authorization=headers.get("authorization", ""),
            )
            self.requests.append(record)
            if self.refuse_basic and record.authorization:
                status, body = "401 Unauthorized", b'{"details": "bad credentials"}'
            else:
                token = self.token(list(query.get("scope", [])))
                status = "200 OK"
                body = json.dumps(
                    {"token": token, "access_token": token, "expires_in": 300}
                ).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()


def _key_and_cert() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
async def token_registry(
    docker_engine: str, tmp_path: Path
) -> AsyncIterator[tuple[LocalRegistry, TokenService]]:
    key, cert = _key_and_cert()
    service = TokenService(key, cert)
    service.server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    service.port = service.server.sockets[0].getsockname()[1]
    bundle = tmp_path / "token-ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    auth = (
        "auth:\n  token:\n"
        f"    realm: {service.realm}\n"
        f"    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )
    try:
        with run_registry(auth_config=auth) as registry:
            yield registry, service
    finally:
        service.server.close()
        await service.server.wait_closed()


def _context(base: str, marker: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("Dockerfile", f"FROM {base}\nCOPY m /m\n".encode()),
            ("m", marker.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_push_pull_and_update_check_with_bearer_tokens(
    engine: DockerEngine,
    busybox_image: str,
    token_registry: tuple[LocalRegistry, TokenService],
    unique_name: str,
    tmp_path: Path,
) -> None:
    registry, tokens = token_registry
    ref = f"{registry.host}/cbt/{unique_name}:1"
    image_id = await engine.build_image(_context(busybox_image, unique_name), tag=ref)
    await engine.push_image(ref.rpartition(":")[0], tag="1")  # dockerd fetches a token
    pushed = {scope for request in tokens.requests for scope in request.scopes}
    assert f"repository:cbt/{unique_name}:push,pull" in pushed
    await engine.remove_image(ref)

    service = ImageService(engine, credentials=DockerCredentials())
    result = await service.pull(ref)
    assert result.image_id == image_id

    tokens.requests.clear()
    check = await service.check_update(ref)
    assert check.update_available is False
    assert check.remote_digest == result.digest
    # our own token request: the challenge's service and scope, anonymous
    assert tokens.requests == [
        TokenRequest(SERVICE, [f"repository:cbt/{unique_name}:pull"], authorization="")
    ]

    # with credentials in the Docker config, the token request carries them
    user_pass = base64.b64encode(b"alice:secret").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"auth": user_pass}}})
    )
    with_creds = ImageService(
        engine, credentials=DockerCredentials.load({"DOCKER_CONFIG": str(tmp_path)})
    )
    tokens.requests.clear()
    assert (await with_creds.check_update(ref)).update_available is False
    assert tokens.requests[0].authorization == f"Basic {user_pass}"

    tokens.refuse_basic = True
    with pytest.raises(RegistryError, match="refused the credentials"):
        await with_creds.check_update(ref)
    await service.remove(ref)
