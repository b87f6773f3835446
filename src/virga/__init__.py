"""virga: host<->guest byte streams over vsock, hybrid vsock, virtio-serial, Unix and TCP.

Layers, bottom up: ``errors``; ``connection`` (one byte-stream interface for every
medium); ``yamux`` and ``xtransport`` (sans-IO protocol cores with thin asyncio
adapters); ``client``/``server`` (the application layer).  virga imports nothing from
cargobay and only the standard library at its core.
"""

from virga.errors import VirgaError

__version__ = "0.1.0"

__all__ = ["VirgaError", "__version__"]
