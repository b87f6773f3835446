"""Containers: the Docker Engine (``engine``: a one-to-one async client over aiodocker;
``detect``, ``images``, ``logs``, ``stats``, ``resources``: services on top of it) and the
compose engine (``compose``).

Nothing is imported here, so ``import cargobay.containers.reference`` stays cheap for
the CLI; import the module you need.
"""
