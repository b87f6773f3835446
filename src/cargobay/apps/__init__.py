"""cargobay.apps: the MAI launcher (seed 002): app instances deployed locally, as a Docker
compose stack, or through WSL2.

- ``models``       Instance, StackConfig, ContainerInfo, ImageInfo, DeploymentTask
- ``store``        instance CRUD in the daemon's SQLite store (migration 0004)
- ``legacy``       import of an older (Python/SQLAlchemy) launcher database
- ``docker_mode``  the MaiBot compose stack generated from an instance, run by the compose engine
                   (or, for wsl2_docker on Windows, by docker compose inside WSL: ``WslStack``)
- ``local_mode``   clone + venv + processes under a PTY (on the mechanism modules)
- ``instance_files`` config TOML edits, API providers, backup/restore of an instance
- ``tasks``        deployment tasks whose progress can be followed
- ``service``      what the daemon calls

The mechanisms (downloads, archives, gitrepo, pyenv, ptyproc, appconfig, secrets, wsl2,
backup) live next to these and know nothing about instances.
"""
