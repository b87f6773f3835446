"""An instance's files: its config TOML files, its API providers, its backup archive.

The operations the app service runs on what lives in an instance's directory, kept apart
from the service's lifecycle code.  The mechanisms do the work: :mod:`.appconfig`
(tomlkit edits that keep comments and order, known keys checked), :mod:`.secrets`
(providers in a 0600 file, masked in every answer) and :mod:`.backup` (one archive,
restored safely under a new name).  Each function is all or nothing: a TOML syntax
error, an unknown table, a bad value or a failed restore changes nothing.

Where the files are: Docker instances bind-mount ``docker-config/mmc/{bot,model}_config.toml``
and ``docker-config/adapters/config.toml`` from the instance directory; local instances
keep MaiBot's own ``<checkout>/config/*.toml``.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cargobay.apps import docker_mode
from cargobay.apps.appconfig import TomlConfig
from cargobay.apps.backup import create_backup, restore_backup
from cargobay.apps.models import DeployMode, Instance, InstanceCreate
from cargobay.apps.secrets import ProviderStore, apply_providers, mask, provider_from
from cargobay.errors import AppConfigError, AppConflict, AppInputError

__all__ = [
    "CONFIG_SERVICE",
    "backup_instance",
    "config_path",
    "default_archive",
    "edit_config",
    "masked",
    "providers",
    "put_provider",
    "read_config",
    "restore_instance",
]

CONFIG_SERVICE = {"bot": "core", "model": "core", "adapter": "adapters"}
"""Config kinds and the stack service that reads each (restarted after a change)."""

BACKED_UP = ("instance.json", "docker-config", "data", "secrets.json", "app/config")


def masked(value: Any) -> Any:
    """``value`` with every ``api_key`` replaced by its masked form."""
    if isinstance(value, dict):
        return {k: mask(str(v)) if k == "api_key" and v else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def config_path(instance: Instance, root: Path, kind: str) -> Path:
    """The ``kind`` (bot, model, adapter) config file of ``instance`` (directory ``root``)."""
    if kind not in CONFIG_SERVICE:
        raise AppInputError(f"bad config kind {kind!r}: one of {', '.join(CONFIG_SERVICE)}")
    if instance.deploy_mode is DeployMode.LOCAL:
        if kind == "adapter":
            raise AppInputError("local instances have no adapter config managed here")
        return Path(instance.paths.get("app", root / "app")) / f"config/{kind}_config.toml"
    if kind == "adapter":
        return root / docker_mode.ADAPTER_CONFIG
    return root / f"docker-config/mmc/{kind}_config.toml"


def read_config(path: Path, kind: str) -> dict[str, Any]:
    """The file's values (API keys masked) and the problems of its known keys."""
    config = TomlConfig.load(path, kind=kind)  # type: ignore[arg-type]
    return {
        "path": str(config.path),
        "values": masked(config.doc.unwrap()),
        "problems": config.validate(),
    }


def edit_config(
    path: Path, kind: str, set_values: dict[str, Any], delete: list[str], create: bool
) -> None:
    """Apply every change or none (the file is written once, atomically, at the end)."""
    config = TomlConfig.load(path, kind=kind)  # type: ignore[arg-type]
    for key, value in set_values.items():
        config.set(key, value, create=create)
    for key in delete:
        config.delete(key)
    problems = config.validate()
    if problems:
        raise AppConfigError(f"{path}: " + "; ".join(problems))
    config.save()


def providers(root: Path) -> ProviderStore:
    return ProviderStore(root / "secrets.json")


def put_provider(root: Path, model_config: Path, provider: dict[str, Any]) -> dict[str, Any]:
    """Save a provider (0600) and write every provider into ``model_config`` (created if
    missing, then 0600 too); the provider as shown (key masked)."""
    parsed = provider_from(provider)
    if not model_config.parent.is_dir():
        raise AppConflict(f"{model_config.parent} does not exist yet; deploy the instance first")
    if not model_config.exists():
        model_config.write_text("# MaiBot model_config.toml (API providers written by cargobay)\n")
    config = TomlConfig.load(model_config, kind="model")  # a syntax error: nothing saved
    store = providers(root)
    store.put(parsed)
    apply_providers(config, store.providers())
    return parsed.public()


async def backup_instance(instance: Instance, root: Path, dest: Path) -> dict[str, Any]:
    """One archive of the instance's settings (``instance.json``), configuration, data
    directories and provider secrets (the stack keeps its state in bind mounts)."""
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((root / "instance.json").write_text, instance.model_dump_json(indent=2))
    paths = [p for p in BACKED_UP if await asyncio.to_thread((root / p).exists)]
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    manifest = await create_backup(dest, instance=instance.name, root=root, paths=paths)
    return {"archive": str(dest), "manifest": manifest.model_dump(mode="json")}


def default_archive(backups: Path, instance: Instance) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return backups / f"{instance.name}-{stamp}.tar.gz"


async def restore_instance(archive: Path, new_name: str, root: Path) -> Instance:
    """The files of a backup in the new directory ``root`` and the instance record to save
    (a new id, not deployed); on failure ``root`` is removed."""
    InstanceCreate(name=new_name)  # the name is valid before anything is written
    await restore_backup(archive, new_name=new_name, root=root)
    try:
        old = Instance.model_validate_json(
            await asyncio.to_thread((root / "instance.json").read_text)
        )
        settings = set(InstanceCreate.model_fields) - {"name", "deploy_mode", "wsl_distro"}
        instance = Instance(
            **old.model_dump(include=settings),
            name=new_name,
            deploy_mode=old.deploy_mode,
            wsl_distro=old.wsl_distro,
        )
    except (OSError, ValueError) as err:
        await asyncio.to_thread(shutil.rmtree, root, True)
        raise AppInputError(f"{archive} is not an app instance backup: {err}") from err
    instance.paths = {"root": str(root)}
    if instance.deploy_mode is not DeployMode.LOCAL:
        instance.docker_network = docker_mode.network_name(instance)
    return instance
