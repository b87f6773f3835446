"""Our own compose engine on the Docker Engine API (seed 002 section 5).

``loader`` reads and validates Compose files into the ``model``; ``hashing`` computes the
config hash docker-compose 1.29.2 writes; ``labels`` are the labels both tools read;
``planner`` turns a project plus what runs now into actions (sans-IO); ``executor`` runs
them against :class:`cargobay.containers.engine.DockerEngine`; ``service`` is the
service the daemon calls (``up``, ``down``, ``ps``, ...); ``export`` and ``swarm`` hand a
project to Docker Swarm or Kubernetes.
"""
