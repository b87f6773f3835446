"""Local mode: the app repository cloned on this host, a venv, and the app's processes
under a PTY.

This is the orchestration only; the mechanisms are separate modules written alongside
(``gitrepo``: dulwich clone/pull; ``pyenv``: find a Python, create a venv, pip install;
``ptyproc``: processes under a PTY with restart policy).  A deploy reports the steps
``clone``, ``python``, ``venv``, ``requirements``; when a mechanism module is not in this
build the step fails with an error that says so (and nothing is left behind).

A failed first clone removes the half-made checkout; a failed pull or install leaves the
previous checkout and venv in place.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

from cargobay.apps.models import Instance, InstanceStatus
from cargobay.apps.store import AppStore
from cargobay.apps.tasks import TaskReporter
from cargobay.errors import AppDeployError

__all__ = ["STEPS", "LocalRunner"]

STEPS = ("clone", "python", "venv", "requirements")


def _mechanism(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"cargobay.apps.{name}")
    except ImportError as err:
        raise AppDeployError(
            f"local mode needs cargobay.apps.{name}, which this build does not have yet; "
            "use deploy_mode docker"
        ) from err


class LocalRunner:
    """Local-mode instances of one daemon (processes are tracked in memory)."""

    def __init__(self) -> None:
        self._processes: dict[str, list[Any]] = {}

    async def deploy(
        self, apps: AppStore, instance: Instance, root: Path, report: TaskReporter
    ) -> str:
        gitrepo = _mechanism("gitrepo")
        pyenv = _mechanism("pyenv")
        checkout, venv = root / "app", root / "venv"
        first = not checkout.exists()
        made_venv = False
        try:
            if first:
                report.step("clone", f"cloning {instance.repo_url}")
                commit = await gitrepo.clone(
                    str(instance.repo_url),
                    checkout,
                    branch=instance.branch,
                    on_progress=report.log,
                )
            else:
                report.step("clone", f"updating {checkout}")
                if instance.branch and instance.branch != gitrepo.current_commit(checkout).branch:
                    await gitrepo.switch_branch(checkout, instance.branch)
                commit = await gitrepo.pull(checkout, on_progress=report.log)
            report.log(f"at {commit.sha[:12]} ({commit.branch}): {commit.subject}")
            report.step("python", "finding a Python >= 3.10")
            python = await pyenv.find_python((3, 10))
            report.log(f"using {python.path} ({python.version_text})")
            report.step("venv", f"venv at {venv}")
            if not (venv / "pyvenv.cfg").exists():
                await pyenv.create_venv(python, venv, on_line=report.log)
                made_venv = True
            report.step("requirements", "installing requirements")
            requirements = checkout / "requirements.txt"
            if requirements.exists():
                await pyenv.pip_install(venv, requirements, on_line=report.log)
            else:
                report.log("no requirements.txt")
        except BaseException:
            if first:  # a failed first deploy leaves nothing behind
                shutil.rmtree(checkout, ignore_errors=True)
            if made_venv and first:
                shutil.rmtree(venv, ignore_errors=True)
            raise
        current = apps.get(instance.id)
        paths = {**current.paths, "app": str(checkout), "venv": str(venv)}
        apps.save(current.model_copy(update={"paths": paths, "status": InstanceStatus.STOPPED}))
        return f"{instance.name}: {commit.sha[:12]} checked out, requirements installed"

    async def start(self, apps: AppStore, instance: Instance, root: Path) -> Instance:
        _mechanism("ptyproc")  # says so when the PTY process module is not in this build
        raise AppDeployError(
            f"starting local-mode instance {instance.name!r}: running its processes under a "
            "PTY is not wired up yet in this build"
        )

    async def stop(self, instance: Instance) -> None:
        for process in self._processes.pop(instance.id, []):
            await process.stop()

    def processes(self, instance: Instance) -> list[dict[str, Any]]:
        return [p.info() for p in self._processes.get(instance.id, [])]

    async def logs(
        self, instance: Instance, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        for process in self._processes.get(instance.id, []):
            for line in process.output(tail=tail):
                yield {"type": "log", "service": process.name, "line": line}

    async def close(self) -> None:
        for instance_id in list(self._processes):
            for process in self._processes.pop(instance_id):
                await process.stop()
