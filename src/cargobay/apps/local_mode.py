"""Local mode: the app repository cloned on this host, a venv, and the app's processes
under a PTY.

This is the orchestration only; the mechanisms are separate modules written alongside
(``gitrepo``: dulwich clone/pull; ``pyenv``: find a Python, create a venv, pip install;
``ptyproc``: processes under a PTY with restart policy).  A deploy reports the steps
``clone``, ``python``, ``venv``, ``requirements``, then ``adapter`` when the instance has
one (MaiBot-Napcat-Adapter: a second checkout ``<instance>/adapter`` with its own venv)
and ``napcat`` when it names a NapCat release (:mod:`cargobay.apps.napcat`).  Start runs
the ``local_commands`` (core), the adapter (process ``adapter``) and, when
``napcat_command`` is set, NapCat (process ``napcat``, in ``<instance>/napcat``), each
under its own PTY with the restart policy; when a mechanism module is not in this
build the step fails with an error that says so (and nothing is left behind).

A failed first clone removes the half-made checkout; a failed pull or install leaves the
previous checkout and venv in place.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import importlib
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from cargobay.apps.downloads import DownloadProgress
from cargobay.apps.models import Instance, InstanceStatus
from cargobay.apps.store import AppStore
from cargobay.apps.tasks import TaskReporter
from cargobay.errors import AppConflict, AppDeployError

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


def _deployed(checkout: Path, venv: Path) -> bool:
    return checkout.is_dir() and venv.is_dir()


async def _install_napcat(instance: Instance, root: Path, report: TaskReporter) -> None:
    """The ``napcat`` step: the configured release into ``<root>/napcat`` (progress as the
    step's percentage); the previous install stays if it fails."""
    napcat = _mechanism("napcat")
    source = instance.napcat
    assert source is not None
    report.step("napcat", f"NapCat {source.version} into {root / 'napcat'}")

    def progress(event: DownloadProgress) -> None:
        if event.state == "progress" and event.total:
            report.progress(event.done / event.total, f"{event.done}/{event.total} bytes")
        elif event.state in ("started", "retrying", "done"):
            report.log(f"download {event.state}: {event.url} {event.message}".rstrip())

    result = await napcat.install_napcat(root / "napcat", source, on_progress=progress)
    if result.changed:
        report.log(f"NapCat {result.version} installed ({result.files} files)")
    else:
        report.log(f"NapCat {result.version} already installed")


async def _deploy_adapter(instance: Instance, root: Path, report: TaskReporter) -> None:
    """The ``adapter`` step: MaiBot-Napcat-Adapter cloned (or pulled) into
    ``<root>/adapter`` with its own venv and requirements; a failed first clone leaves
    nothing, a failed update leaves the previous checkout and venv."""
    gitrepo, pyenv = _mechanism("gitrepo"), _mechanism("pyenv")
    adapter = instance.adapter
    assert adapter is not None
    checkout, venv = root / "adapter", root / "adapter-venv"
    first = not checkout.exists()
    report.step("adapter", f"adapter {adapter.repo_url} into {checkout}")
    try:
        if first:
            commit = await gitrepo.clone(
                adapter.repo_url, checkout, branch=adapter.branch, on_progress=report.log
            )
        else:
            if adapter.branch and adapter.branch != gitrepo.current_commit(checkout).branch:
                await gitrepo.switch_branch(checkout, adapter.branch)
            commit = await gitrepo.pull(checkout, on_progress=report.log)
        report.log(f"adapter at {commit.sha[:12]} ({commit.branch}): {commit.subject}")
        if not (venv / "pyvenv.cfg").exists():
            python = await pyenv.find_python((3, 10))
            await pyenv.create_venv(python, venv, on_line=report.log)
        requirements = checkout / "requirements.txt"
        if requirements.exists():
            await pyenv.pip_install(venv, requirements, on_line=report.log)
    except BaseException:
        if first:
            shutil.rmtree(checkout, ignore_errors=True)
            shutil.rmtree(venv, ignore_errors=True)
        raise


def _log_line(name: str, line: str) -> dict[str, Any]:
    return {"type": "log", "service": name, "stream": "pty", "line": line}


def _split(text: str) -> tuple[list[str], str]:
    """Complete lines and the unfinished rest (held back until its newline comes; a final
    lone ``\\r`` too, as it may be the first half of ``\\r\\n``)."""
    lines = text.splitlines(keepends=True)
    rest = lines.pop() if lines and not lines[-1].endswith("\n") else ""
    return [(line.splitlines() or [""])[0] for line in lines], rest


async def _follow(
    queue: asyncio.Queue[tuple[str, bytes]],
    processes: list[tuple[str, Any]],
    partial: dict[str, str],
) -> AsyncIterator[tuple[str, str]]:
    """(process name, line) from the PTY output in ``queue`` until every process ends."""
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name, _ in processes}
    ended: asyncio.Future[Any] = asyncio.gather(*(p.wait() for _, p in processes))
    getter: asyncio.Future[tuple[str, bytes]] | None = None
    try:
        while True:
            if queue.empty():
                if ended.done():
                    break
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    continue  # ended: the queue is drained, then the loop stops
                name, data = getter.result()
            else:
                name, data = queue.get_nowait()
            lines, partial[name] = _split(partial.get(name, "") + decoders[name].decode(data))
            for line in lines:
                yield name, line
        for name, rest in partial.items():  # the last words without a newline
            if rest.rstrip("\r"):
                yield name, rest.rstrip("\r")
    finally:
        if getter is not None:
            getter.cancel()
        ended.cancel()  # the processes' supervisors are shielded from this


class LocalRunner:
    """Local-mode instances of one daemon (processes are tracked in memory)."""

    def __init__(self) -> None:
        self._processes: dict[str, list[tuple[str, Any]]] = {}
        # ``logs --follow`` readers of each instance: (process name, output) per PTY read
        self._followers: dict[str, set[asyncio.Queue[tuple[str, bytes]]]] = {}

    def _fan_out(self, instance_id: str, name: str, data: bytes) -> None:
        for queue in self._followers.get(instance_id, ()):
            queue.put_nowait((name, data))

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
            if instance.adapter is not None:
                await _deploy_adapter(instance, root, report)
            if instance.napcat is not None:
                await _install_napcat(instance, root, report)
        except BaseException:
            if first:  # a failed first deploy leaves nothing behind
                shutil.rmtree(checkout, ignore_errors=True)
            if made_venv and first:
                shutil.rmtree(venv, ignore_errors=True)
            raise
        current = apps.get(instance.id)
        paths = {**current.paths, "app": str(checkout), "venv": str(venv)}
        if instance.napcat is not None:
            paths["napcat"] = str(root / "napcat")
        if instance.adapter is not None:
            paths["adapter"] = str(root / "adapter")
            paths["adapter_venv"] = str(root / "adapter-venv")
        status = InstanceStatus.RUNNING if self.running(instance) else InstanceStatus.STOPPED
        apps.save(current.model_copy(update={"paths": paths, "status": status}))
        return f"{instance.name}: {commit.sha[:12]} checked out, requirements installed"

    async def start(self, apps: AppStore, instance: Instance, root: Path) -> Instance:
        """Run the instance's ``local_commands`` under PTYs (restart on failure)."""
        ptyproc = _mechanism("ptyproc")
        pyenv = _mechanism("pyenv")
        if any(p.state in ("running", "backoff") for _, p in self._processes.get(instance.id, [])):
            raise AppConflict(f"app instance {instance.name!r} is already running")
        checkout = Path(instance.paths.get("app", root / "app"))
        venv = Path(instance.paths.get("venv", root / "venv"))
        if not _deployed(checkout, venv):
            raise AppConflict(
                f"app instance {instance.name!r} is not deployed yet; "
                f"run `cargobay app deploy {instance.name}` first"
            )
        python = str(pyenv.venv_python_path(venv))
        plan = [
            (name, [python if a == "{python}" else a for a in argv], checkout)
            for name, argv in instance.local_commands.items()
        ]
        if instance.adapter is not None:
            adapter = Path(instance.paths.get("adapter", root / "adapter"))
            adapter_venv = Path(instance.paths.get("adapter_venv", root / "adapter-venv"))
            if not _deployed(adapter, adapter_venv):
                raise AppConflict(
                    f"app instance {instance.name!r}: the adapter is not deployed yet; "
                    f"run `cargobay app deploy {instance.name}` first"
                )
            adapter_python = str(pyenv.venv_python_path(adapter_venv))
            argv = [adapter_python if a == "{python}" else a for a in instance.adapter.command]
            plan.append(("adapter", argv, adapter))
        if instance.napcat is not None and instance.napcat_command:
            napcat_dir = root / "napcat"
            if not napcat_dir.is_dir():
                raise AppConflict(
                    f"app instance {instance.name!r}: NapCat is not installed yet; "
                    f"run `cargobay app deploy {instance.name}` first"
                )
            plan.append(("napcat", list(instance.napcat_command), napcat_dir))
        started: list[tuple[str, Any]] = []
        try:
            for name, argv, cwd in plan:
                spec = ptyproc.ProcessSpec(argv=argv, cwd=cwd, restart="on-failure", max_restarts=5)
                process = ptyproc.PtyProcess(
                    spec, on_output=functools.partial(self._fan_out, instance.id, name)
                )
                await process.start()
                started.append((name, process))
        except BaseException:
            for _, process in started:
                await process.stop()
            raise
        self._processes[instance.id] = started
        return apps.save(
            apps.get(instance.id).model_copy(update={"status": InstanceStatus.RUNNING})
        )

    def running(self, instance: Instance) -> bool:
        """Whether any of the instance's processes runs (or waits to be restarted)."""
        return any(
            p.state in ("running", "backoff") for _, p in self._processes.get(instance.id, [])
        )

    async def stop(self, instance: Instance) -> None:
        for _, process in self._processes.pop(instance.id, []):
            await process.stop()

    def processes(self, instance: Instance) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "pid": p.pid,
                "state": str(p.state),
                "exit_code": p.exit_code,
                "restarts": p.restarts,
            }
            for name, p in self._processes.get(instance.id, [])
        ]

    async def logs(
        self,
        instance: Instance,
        *,
        follow: bool = False,
        tail: int | None = None,
        names: Sequence[str] = (),
    ) -> AsyncIterator[dict[str, Any]]:
        """The processes' output as lines, ANSI sequences kept (from the PTY history);
        ``follow``: then the new output as it comes, until every process has ended (stopped,
        or exited with no restart due) or the reader goes away.  ``names``: only these
        processes (default: all)."""
        processes = [
            (name, p)
            for name, p in self._processes.get(instance.id, [])
            if not names or name in names
        ]
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        if follow:  # before the history is read: no output falls in between
            self._followers.setdefault(instance.id, set()).add(queue)
        try:
            partial: dict[str, str] = {}
            for name, process in processes:
                text = process.history().decode(errors="replace")
                lines, partial[name] = _split(text) if follow else (text.splitlines(), "")
                for line in lines[-tail:] if tail else lines:
                    yield _log_line(name, line)
            if not follow or not processes:
                return
            async for name, line in _follow(queue, processes, partial):
                yield _log_line(name, line)
        finally:
            followers = self._followers.get(instance.id)
            if followers is not None:
                followers.discard(queue)
                if not followers:
                    del self._followers[instance.id]

    async def close(self) -> None:
        """Stop every process (daemon shutdown: no orphans, no zombies)."""
        for instance_id in list(self._processes):
            for _, process in self._processes.pop(instance_id):
                await process.stop()
