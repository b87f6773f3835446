"""virga: host<->guest byte streams over vsock, hybrid vsock, virtio-serial, Unix and TCP.

Layers, bottom up (seed 001): ``errors``; ``connection`` (one byte-stream interface for
every medium, addressed by strings such as ``hvsock:/run/vm.sock:1024``); ``yamux`` and
``xtransport`` (sans-IO protocol cores with thin asyncio adapters) behind the
``transport.Transport`` interface; ``client``/``server`` (the application layer), with
``middleware`` (compression, encryption, rate limiting), ``pool`` and ``reconnect``.
virga imports nothing from cargobay.

    async with VirgaClient.with_yamux(ClientConfig(address="unix:/tmp/s.sock")) as client:
        await client.send(b"ping")
        reply = await client.recv()

The names below are imported lazily: ``import virga.yamux`` in a guest agent must not
pay for the application layer and ``cryptography`` (Python starts slowly under TCG).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from virga.errors import VirgaError

__version__ = "0.1.0"

_LAZY = {
    "ClientConfig": "virga.client",
    "VirgaClient": "virga.client",
    "ServerConfig": "virga.server",
    "VirgaServer": "virga.server",
    "Compression": "virga.middleware",
    "Encryption": "virga.middleware",
    "RateLimit": "virga.middleware",
    "ConnectionPool": "virga.pool",
    "check_health": "virga.pool",
    "ReconnectPolicy": "virga.reconnect",
    "XTransportConfig": "virga.xtransport",
    "YamuxConfig": "virga.yamux",
    "connect": "virga.connection",
    "listen": "virga.connection",
}

if TYPE_CHECKING:
    from virga.client import ClientConfig, VirgaClient
    from virga.connection import connect, listen
    from virga.middleware import Compression, Encryption, RateLimit
    from virga.pool import ConnectionPool, check_health
    from virga.reconnect import ReconnectPolicy
    from virga.server import ServerConfig, VirgaServer
    from virga.xtransport import XTransportConfig
    from virga.yamux import YamuxConfig


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'virga' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ClientConfig",
    "Compression",
    "ConnectionPool",
    "Encryption",
    "RateLimit",
    "ReconnectPolicy",
    "ServerConfig",
    "VirgaClient",
    "VirgaError",
    "VirgaServer",
    "XTransportConfig",
    "YamuxConfig",
    "__version__",
    "check_health",
    "connect",
    "listen",
]
