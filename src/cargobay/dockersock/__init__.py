"""A Docker-compatible socket: ``DOCKER_HOST=unix://PATH`` reaches a Docker engine.

``cargobay docker-socket --vm NAME`` makes the daemon listen on a Unix socket and pass
every client connection, byte for byte, to dockerd inside machine ``NAME`` (a machine
of the ``docker`` image, ``cargobay.images.recipes``): one yamux stream per connection
over the machine's guest agent channel, to the guest's ``/run/docker.sock`` (the agent's
``unix.connect``).  ``--host-engine`` forwards to the host's own engine instead.  The
stock ``docker`` CLI works through it unchanged, ``attach`` and ``run`` included: no
HTTP is parsed, so hijacked and upgraded connections pass through as they are.

    models    API models, socket path checks
    listener  one listening socket: stale-socket check, per-connection splice, errors
              answered as HTTP so the docker CLI prints them
    targets   the host engine and a machine's engine (where the bytes go)
    service   the daemon's set of forwarders (start, list, stop, close)
"""

from cargobay.dockersock.models import DockerSocketCreate, DockerSocketInfo
from cargobay.dockersock.service import DockerSocketService

__all__ = ["DockerSocketCreate", "DockerSocketInfo", "DockerSocketService"]
