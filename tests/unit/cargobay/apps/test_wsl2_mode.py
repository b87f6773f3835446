"""wsl2_docker instances: refused off Windows; on Windows (platform injected) the stack's
compose file is generated and ``docker compose`` runs inside the distribution through
``wsl.exe``.  wsl.exe does not exist on Linux, so its answers come from
``windows_only_fake_wsl_exe``, a stand-in for that Windows-only program."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path, PureWindowsPath

import pytest

from cargobay.apps.docker_mode import WslStack
from cargobay.apps.models import DeployMode, InstanceCreate
from cargobay.apps.service import AppService
from cargobay.apps.wsl2 import CommandResult, Wsl
from cargobay.errors import AppConflict, AppInputError
from cargobay.store.sqlite import Store


class WindowsOnlyFakeWslExe:
    """Answers like wsl.exe with Docker 24 and compose v2 inside the distribution; ``fail``
    makes ``compose up`` fail."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = False
        self.all = {"core": "c0ffee1", "napcat": "c0ffee2", "adapters": "c0ffee3"}
        self.running: set[str] = set()

    async def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        inner = list(argv[argv.index("--exec") + 1 :]) if "--exec" in argv else []
        if inner[:2] == ["docker", "version"]:
            return CommandResult(0, b"24.0.7\n")
        if inner[:3] == ["docker", "compose", "version"]:
            return CommandResult(0, b"Docker Compose version v2.24.0\n")
        if "up" in inner:
            if self.fail:
                return CommandResult(1, b"", b"pull access denied for mlikiowa/napcat-docker\n")
            self.running = set(self.all)
        for verb in ("start", "stop", "restart"):
            if verb in inner:
                named = inner[inner.index(verb) + 1 :] or list(self.all)
                self.running = (
                    self.running - set(named) if verb == "stop" else self.running | set(named)
                )
        if "ps" in inner:
            ids = sorted(self.all[s] for s in self.running)
            return CommandResult(0, "".join(f"{i}\n" for i in ids).encode())
        if "logs" in inner:
            return CommandResult(0, b"core-1  | hello from core\n")
        return CommandResult(0, b"")


@pytest.fixture
def windows_only_fake_wsl_exe() -> WindowsOnlyFakeWslExe:
    return WindowsOnlyFakeWslExe()


@pytest.fixture
def service(
    tmp_path: Path, windows_only_fake_wsl_exe: WindowsOnlyFakeWslExe
) -> Iterator[AppService]:
    store = Store.open(tmp_path / "state.db")

    def host_path(path: Path) -> str:  # the instance directory as Windows would name it
        return str(PureWindowsPath("C:/MAI/apps") / path.name)

    stack = WslStack(Wsl(windows_only_fake_wsl_exe), host_path)
    yield AppService(store, tmp_path / "apps", platform="win32", wsl=stack)
    store.close()


def test_refused_off_windows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        linux = AppService(store, tmp_path / "apps", platform="linux")
        body = InstanceCreate(name="w", deploy_mode=DeployMode.WSL2_DOCKER, wsl_distro="Ubuntu")
        with pytest.raises(AppInputError, match="only available on Windows"):
            linux.create(body)
    finally:
        store.close()


async def test_deploy_runs_compose_inside_the_distribution(
    service: AppService, windows_only_fake_wsl_exe: WindowsOnlyFakeWslExe
) -> None:
    service.create(
        InstanceCreate(name="w1", deploy_mode=DeployMode.WSL2_DOCKER, wsl_distro="Ubuntu")
    )
    task = await service.tasks.wait(service.deploy("w1").id)
    assert task.state == "succeeded", task.error
    assert task.steps == ["prepare", "compose file", "docker in wsl", "containers"]
    up = next(c for c in windows_only_fake_wsl_exe.calls if "up" in c)
    assert up[:3] == ["wsl.exe", "--distribution", "Ubuntu"]
    inner = up[up.index("--exec") + 1 :]
    assert inner == [
        "docker",
        "compose",
        "--project-directory",
        "/mnt/c/MAI/apps/w1",
        "-f",
        "/mnt/c/MAI/apps/w1/docker-compose.yml",
        "-p",
        "maibot-w1",
        "up",
        "-d",
        "--remove-orphans",
    ]
    instance = service.get("w1")
    assert instance.container_ids == ["c0ffee1", "c0ffee2", "c0ffee3"]
    assert instance.status == "running"
    assert (service.root / "w1" / "docker-compose.yml").is_file()

    lines = [e async for e in await service.logs("w1")]
    assert lines == [{"type": "log", "service": "core-1", "line": "hello from core"}]
    stopped = await service.stop("w1", ["core"])
    assert stopped.status == "partial"  # the fake still lists three running containers... of 3
    with pytest.raises(AppConflict, match="WSL2"):
        await service.stats("w1")


async def test_a_failed_first_deploy_is_undone(
    service: AppService, windows_only_fake_wsl_exe: WindowsOnlyFakeWslExe
) -> None:
    windows_only_fake_wsl_exe.fail = True
    service.create(
        InstanceCreate(name="w2", deploy_mode=DeployMode.WSL2_DOCKER, wsl_distro="Ubuntu")
    )
    task = await service.tasks.wait(service.deploy("w2").id)
    assert task.state == "failed"
    assert "pull access denied" in str(task.error)
    assert any("down" in c for c in windows_only_fake_wsl_exe.calls)
    assert not (service.root / "w2" / "docker-compose.yml").exists()
    assert service.get("w2").status == "created"
