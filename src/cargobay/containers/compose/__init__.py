"""Our own compose engine on the Docker Engine API (seed 002 section 5).

Reading a project (pure, unit-tested):
  ``interpolation`` ``${VAR:-default}`` and ``.env``; ``values`` ports, volumes, durations
  and sizes in short and long syntax; ``model`` the Compose Specification as pydantic
  models in one normal form; ``loader`` files, merge, profiles, project names;
  ``extends``; ``validate`` project-wide checks with errors naming file, service and key.

Compatibility with docker-compose 1.29.2 (the peer in the tests):
  ``labels`` the labels both tools write and read; ``hashing`` the config hash exactly as
  1.29 computes it; ``merge129`` 1.29's own merge of several files, which the hash needs.

Running it:
  ``planner`` project + current state -> actions (sans-IO); ``spec`` Engine API bodies;
  ``executor`` carries a plan out (dependency order, parallel, rollback);
  ``service`` ``up``/``down``/``stop``/``start``/``restart``/``ps``/``logs`` for the daemon.

Hand-off past one machine:
  ``export`` ``config`` document, Swarm stack file, Kubernetes manifests (with warnings);
  ``swarm`` ``deploy --swarm`` through the Engine API.
"""
