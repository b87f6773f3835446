"""The root of every CargoBay error, and one subtree per domain.

Every user-facing error says what failed and what to do about it.  ``code`` is a short
stable identifier the daemon puts in its JSON error bodies and the CLI maps to exit codes;
``status`` is the HTTP status the daemon answers with.

    CargoBayError
    ├── InvalidInput (400)            a bad name, size, port mapping, argument
    ├── NotFound (404)                unknown machine or image
    ├── Conflict (409)                duplicate name, wrong state for the operation
    ├── ImageError                    building, finding or reading a guest image
    ├── HypervisorError               starting, stopping or talking to a VM process
    │   └── AccelerationError         KVM/TCG selection
    ├── GuestError                    the guest agent failed or did not answer
    │   └── GuestTimeout
    ├── VMControlError                QMP, QGA, Spice, libvirt sessions to a running VM
    ├── StoreError                    the SQLite store, its migrations
    └── DaemonError                   reaching or starting cargobayd
"""

from __future__ import annotations

from typing import ClassVar


class CargoBayError(Exception):
    """Root of every error raised by cargobay."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500


class InvalidInput(CargoBayError, ValueError):
    code = "invalid_input"
    status = 400


class NotFound(CargoBayError, LookupError):
    code = "not_found"
    status = 404


class Conflict(CargoBayError):
    code = "conflict"
    status = 409


class ImageError(CargoBayError):
    code = "image_error"
    status = 500


class HypervisorError(CargoBayError):
    code = "hypervisor_error"
    status = 500


class AccelerationError(HypervisorError):
    code = "acceleration_error"


class GuestError(CargoBayError):
    code = "guest_error"
    status = 502


class GuestTimeout(GuestError, TimeoutError):
    code = "guest_timeout"
    status = 504


class VMControlError(CargoBayError):
    code = "vmcontrol_error"
    status = 502


class StoreError(CargoBayError):
    code = "store_error"
    status = 500


class DaemonError(CargoBayError):
    code = "daemon_error"
    status = 503


ERROR_TYPES: dict[str, type[CargoBayError]] = {
    cls.code: cls
    for cls in (
        CargoBayError,
        InvalidInput,
        NotFound,
        Conflict,
        ImageError,
        HypervisorError,
        AccelerationError,
        GuestError,
        GuestTimeout,
        VMControlError,
        StoreError,
        DaemonError,
    )
}
"""Error classes by code, so the SDK can re-raise what the daemon reported."""


# --- containers (Docker Engine) -------------------------------------------------------
#
#   ContainerError                    the Docker Engine and what runs on it
#   ├── EngineUnavailable (503)       no engine, or it went away (mid-stream too)
#   ├── EngineError (502)             the Engine answered with an error (status, message)
#   │   └── EngineStreamError         an error inside a 200 progress stream (pull, push, build)
#   ├── ContainerNotFound (404)       also NotFound
#   ├── ImageNotFound (404)           also NotFound
#   ├── NetworkNotFound (404)         also NotFound
#   ├── VolumeNotFound (404)          also NotFound
#   ├── ContainerConflict (409)       a name in use, a container in the wrong state
#   ├── InvalidReference (400)        a malformed image reference (also InvalidInput)
#   └── RegistryError (502)           talking to a registry for an update check


class ContainerError(CargoBayError):
    code = "container_error"
    status = 502


class EngineUnavailable(ContainerError):
    code = "engine_unavailable"
    status = 503


class EngineError(ContainerError):
    """The Docker Engine answered an error; ``engine_status`` is its HTTP status (0 inside a
    stream) and ``engine_message`` its own words."""

    code = "engine_error"
    status = 502

    def __init__(
        self, message: str, *, engine_status: int = 0, engine_message: str = ""
    ) -> None:
        super().__init__(message)
        self.engine_status = engine_status
        self.engine_message = engine_message or message


class EngineStreamError(EngineError):
    code = "engine_stream_error"


class ContainerNotFound(ContainerError, NotFound):
    code = "container_not_found"
    status = 404


class ImageNotFound(ContainerError, NotFound):
    code = "image_not_found"
    status = 404


class NetworkNotFound(ContainerError, NotFound):
    code = "network_not_found"
    status = 404


class VolumeNotFound(ContainerError, NotFound):
    code = "volume_not_found"
    status = 404


class ContainerConflict(ContainerError, Conflict):
    code = "container_conflict"
    status = 409


class InvalidReference(ContainerError, InvalidInput):
    code = "invalid_reference"
    status = 400


class RegistryError(ContainerError):
    code = "registry_error"
    status = 502


ERROR_TYPES.update(
    {
        cls.code: cls
        for cls in (
            ContainerError,
            EngineUnavailable,
            EngineError,
            EngineStreamError,
            ContainerNotFound,
            ImageNotFound,
            NetworkNotFound,
            VolumeNotFound,
            ContainerConflict,
            InvalidReference,
            RegistryError,
        )
    }
)


# --- compose (cargobay.containers.compose) ----------------------------------------------
#
#   ContainerError
#   └── ComposeError (502)            running a compose project failed (names the service)
#       └── ComposeFileError (400)    a compose file is wrong (names file, service, key)


class ComposeError(ContainerError):
    code = "compose_error"
    status = 502


class ComposeFileError(ComposeError, InvalidInput):
    """A compose file (or project) that cannot be used: ``file``, ``service`` and ``key``
    say where; the message says what is wrong."""

    code = "compose_file_error"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        service: str | None = None,
        key: str | None = None,
    ) -> None:
        where = [part for part in (file, f"service {service!r}" if service else "",
                                   f"key {key!r}" if key else "") if part]  # fmt: skip
        super().__init__(f"{': '.join(where)}: {message}" if where else message)
        self.file = file
        self.service = service
        self.key = key


ERROR_TYPES.update({cls.code: cls for cls in (ComposeError, ComposeFileError)})


# --- apps (cargobay.apps: the MAI launcher) ---------------------------------------------
#
#   AppError                          the MAI launcher's instances and their mechanisms
#   ├── DownloadError (502)           an HTTP download failed (names the URL)
#   │   └── ChecksumMismatch (502)    the SHA-256 of a download is not the expected one
#   ├── ArchiveError (400)            an archive is unsafe or broken (also InvalidInput)
#   ├── AppConfigError (400)          a config file / key / value is wrong (also InvalidInput)
#   │   └── TomlSyntaxError (400)     a TOML file does not parse (names file, line, column)
#   ├── GitError (502)                cloning, switching or pulling a repository failed
#   ├── PythonEnvError (500)          finding Python, creating a venv, pip install
#   ├── AppProcessError (500)         starting/stopping an app's process under a PTY
#   ├── WslError (502)                wsl.exe failed or answered something unexpected
#   └── BackupError (500)             writing or restoring an instance backup


class AppError(CargoBayError):
    code = "app_error"
    status = 500


class DownloadError(AppError):
    code = "download_error"
    status = 502


class ChecksumMismatch(DownloadError):
    code = "checksum_mismatch"


class ArchiveError(AppError, InvalidInput):
    code = "archive_error"
    status = 400


class AppConfigError(AppError, InvalidInput):
    code = "app_config_error"
    status = 400


class TomlSyntaxError(AppConfigError):
    """A TOML file that does not parse; ``file``, ``line`` and ``column`` say where."""

    code = "toml_syntax_error"

    def __init__(self, message: str, *, file: str = "", line: int = 0, column: int = 0) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}" if file else message)
        self.file = file
        self.line = line
        self.column = column


class GitError(AppError):
    code = "git_error"
    status = 502


class PythonEnvError(AppError):
    code = "python_env_error"
    status = 500


class AppProcessError(AppError):
    code = "app_process_error"
    status = 500


class WslError(AppError):
    code = "wsl_error"
    status = 502


class BackupError(AppError):
    code = "backup_error"
    status = 500


ERROR_TYPES.update(
    {
        cls.code: cls
        for cls in (
            AppError,
            DownloadError,
            ChecksumMismatch,
            ArchiveError,
            AppConfigError,
            TomlSyntaxError,
            GitError,
            PythonEnvError,
            AppProcessError,
            WslError,
            BackupError,
        )
    }
)


# -- apps (the MAI launcher) ----------------------------------------------------------------
# more AppError subclasses (the instances service):
#   ├── AppNotFound (404)           no instance (or task) by that name/id
#   ├── AppConflict (409)           a name clash, or an operation the instance's state refuses
#   ├── AppInputError (400)         bad instance settings (names the field)
#   └── AppDeployError (502)        a deploy step failed (what was cleaned up is in the message)


class AppNotFound(AppError, NotFound):
    code = "app_not_found"
    status = 404


class AppConflict(AppError, Conflict):
    code = "app_conflict"
    status = 409


class AppInputError(AppError, InvalidInput):
    code = "app_invalid_input"
    status = 400


class AppDeployError(AppError):
    code = "app_deploy_error"
    status = 502


ERROR_TYPES.update(
    {cls.code: cls for cls in (AppNotFound, AppConflict, AppInputError, AppDeployError)}
)


# --- guest files and sandboxes ----------------------------------------------------------
#
#   FileTooLarge (413)                a guest file read or written through the API is over
#                                     the size limit of one request (also InvalidInput)
#   SandboxError                      the sandbox SDK (cargobay.sdk.sandbox)
#   ├── TemplateNotFound (404)        a template names no built image (also NotFound)
#   └── CommandExitError              commands.run(check=True) and a non-zero exit


class FileTooLarge(InvalidInput):
    code = "file_too_large"
    status = 413


class SandboxError(CargoBayError):
    code = "sandbox_error"
    status = 500


class TemplateNotFound(SandboxError, NotFound):
    code = "template_not_found"
    status = 404


class CommandExitError(SandboxError):
    """A command run with ``check=True`` ended with a non-zero exit code; ``result`` is
    its ``CommandResult`` (output included)."""

    code = "command_exit_error"
    status = 500

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


ERROR_TYPES.update(
    {cls.code: cls for cls in (FileTooLarge, SandboxError, TemplateNotFound, CommandExitError)}
)


# --- Docker-compatible socket (cargobay.dockersock) --------------------------------------
#
#   DockerSocketError (502)           forwarding a Docker socket failed
#   ├── DockerSocketInUse (409)       the socket path is taken: a live socket, another file,
#   │                                 or a forwarder of this daemon (also Conflict)
#   └── NoDockerEngine (404)          the machine runs no Docker engine: not the docker
#                                     image, or dockerd is not up (also NotFound)


class DockerSocketError(CargoBayError):
    code = "docker_socket_error"
    status = 502


class DockerSocketInUse(DockerSocketError, Conflict):
    code = "docker_socket_in_use"
    status = 409


class NoDockerEngine(DockerSocketError, NotFound):
    code = "no_docker_engine"
    status = 404


ERROR_TYPES.update(
    {cls.code: cls for cls in (DockerSocketError, DockerSocketInUse, NoDockerEngine)}
)


# --- configuration and platforms (cargobay.config, cargobay.platforms) -------------------
#
#   ConfigError (400)                 config.yaml or a sandbox setting is invalid; the
#                                     message starts with the key path (also InvalidInput)
#   PlatformError (500)               a platform layer (Lima, WSL2) cannot do what was asked


class ConfigError(InvalidInput):
    code = "config_error"
    status = 400


class PlatformError(CargoBayError):
    code = "platform_error"
    status = 500


ERROR_TYPES.update({cls.code: cls for cls in (ConfigError, PlatformError)})


# Plugins (issue 7):
#   PluginError (500)                 a plugin failed to load, initialize or run a hook; the
#                                     daemon records it (GET /v1/plugins) and carries on


class PluginError(CargoBayError):
    code = "plugin_error"
    status = 500


ERROR_TYPES.update({PluginError.code: PluginError})
