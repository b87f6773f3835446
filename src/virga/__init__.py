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
"""

from virga.client import ClientConfig, VirgaClient
from virga.connection import connect, listen
from virga.errors import VirgaError
from virga.middleware import Compression, Encryption, RateLimit
from virga.pool import ConnectionPool, check_health
from virga.reconnect import ReconnectPolicy
from virga.server import ServerConfig, VirgaServer
from virga.xtransport import XTransportConfig
from virga.yamux import YamuxConfig

__version__ = "0.1.0"

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
