"""The Windows platform layer: a WSL2 distribution is the Linux that runs the VMs.

    wsl.exe --import cargobay-wsl C:\\…\\wsl ROOTFS.tar --version 2      create
    wsl.exe --distribution cargobay-wsl --exec sleep infinity           start (WSL stops an
                                                                        idle distribution:
                                                                        this keeps it up)
    wsl.exe --terminate cargobay-wsl                                    stop
    wsl.exe --distribution cargobay-wsl [--cd DIR] --exec ARGV...       run a command
    wsl.exe --distribution cargobay-wsl --exec cp -a -- /mnt/c/… /…     copy in (and out)

Windows paths reach the distribution under ``/mnt/<drive>`` (drvfs) and the
distribution's files reach Windows as ``\\\\wsl.localhost\\<distro>\\…``: the translation
and the distribution-name rules are the launcher's (``cargobay.apps.wsl2``), reused
here.  KVM inside WSL2 needs nested virtualization, switched on in ``%UserProfile%\\.wslconfig``
(``wslconfig``), which takes effect after ``wsl.exe --shutdown``.

Only command lines and paths: a ``Runner`` on Windows runs them (tests use a stand-in
named ``FakeWindowsOnlyWsl``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cargobay.apps.wsl2 import (
    WSL_EXE,
    CommandResult,
    Distro,
    Runner,
    check_distro,
    decode_wsl_output,
    parse_list_verbose,
    windows_to_wsl,
    wsl_to_windows,
)
from cargobay.config.settings import WindowsSettings, size_mib
from cargobay.errors import InvalidInput, PlatformError
from cargobay.platforms.base import PlatformFeatures

__all__ = ["WindowsPlatform", "wslconfig"]


def wslconfig(
    settings: WindowsSettings, *, memory: str | int | None = None, cpus: int | None = None
) -> str:
    """The ``[wsl2]`` section of ``.wslconfig`` the layer needs."""
    lines = [
        "[wsl2]",
        f"nestedVirtualization={'true' if settings.nested_virtualization else 'false'}",
    ]
    if memory is not None:
        try:
            lines.append(f"memory={size_mib(memory, 'memory')}MB")
        except ValueError as err:
            raise InvalidInput(str(err)) from err
    if cpus is not None:
        if cpus < 1:
            raise InvalidInput(f"processors {cpus}: use 1 or more")
        lines.append(f"processors={cpus}")
    return "\n".join(lines) + "\n"


class WindowsPlatform:
    """The WSL2 distribution named in config.yaml's ``platform.windows``."""

    name = "windows"

    def __init__(
        self,
        settings: WindowsSettings | None = None,
        *,
        install_dir: str = r"C:\ProgramData\CargoBay\wsl",
        rootfs_tarball: str = r"C:\ProgramData\CargoBay\cargobay-wsl.tar",
        wsl: str = WSL_EXE,
    ) -> None:
        self.settings = settings or WindowsSettings()
        self.distro = check_distro(self.settings.wsl_distro)
        self.install_dir = install_dir
        self.rootfs_tarball = rootfs_tarball
        self.wsl = wsl
        self.features = PlatformFeatures(
            host_is_linux=False,
            file_sharing="drvfs",
            nested_virtualization=self.settings.nested_virtualization,
        )

    def _in(self) -> list[str]:
        return [self.wsl, "--distribution", self.distro]

    def create_argv(self) -> list[list[str]]:
        return [
            [
                self.wsl,
                "--import",
                self.distro,
                self.install_dir,
                self.rootfs_tarball,
                "--version",
                "2",
            ]
        ]

    def start_argv(self) -> list[str] | None:
        return [*self._in(), "--exec", "sleep", "infinity"]

    def stop_argv(self, force: bool = False) -> list[str] | None:
        # wsl.exe has no gentler stop for one distribution; --shutdown would stop them all.
        return [self.wsl, "--terminate", self.distro]

    def list_argv(self) -> list[str]:
        return [self.wsl, "--list", "--verbose"]

    def exec_argv(self, argv: Sequence[str], workdir: str | None = None) -> list[str]:
        if not argv:
            raise InvalidInput("nothing to run")
        cmd = self._in()
        if workdir is not None:
            cmd += ["--cd", workdir]
        return [*cmd, "--exec", *argv]

    def copy_in_argv(self, host_path: str, linux_path: str) -> list[str]:
        if not linux_path.startswith("/"):
            raise InvalidInput(f"{linux_path}: give an absolute path inside the distribution")
        return self.exec_argv(["cp", "-a", "--", windows_to_wsl(host_path), linux_path])

    def copy_out_argv(self, linux_path: str, host_path: str) -> list[str]:
        if not linux_path.startswith("/"):
            raise InvalidInput(f"{linux_path}: give an absolute path inside the distribution")
        return self.exec_argv(["cp", "-a", "--", linux_path, windows_to_wsl(host_path)])

    def linux_path(self, host_path: str) -> str:
        return windows_to_wsl(host_path)

    def windows_path(self, linux_path: str) -> str:
        return wsl_to_windows(linux_path, self.distro)

    async def status(self, runner: Runner) -> Distro | None:
        """The distribution as ``wsl -l -v`` lists it (None: not imported yet)."""
        result: CommandResult = await runner(self.list_argv())
        text = decode_wsl_output(result.stdout + result.stderr)
        if result.returncode != 0 and "has no installed distributions" not in text:
            raise PlatformError(f"`wsl --list --verbose` failed ({result.returncode}): {text}")
        found = [d for d in parse_list_verbose(text) if d.name == self.distro]
        if found and found[0].version != 2:
            raise PlatformError(
                f"the distribution {self.distro!r} runs under WSL 1; convert it with "
                f"`wsl --set-version {self.distro} 2`"
            )
        return found[0] if found else None
