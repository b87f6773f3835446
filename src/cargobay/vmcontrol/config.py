"""The ATP transport configuration (seed 003, section 6.1): libvirt hosts and Spice VMs.

One YAML document, one top-level key::

    transport:
      keepalive_interval: 5          # libvirt keepalive (virConnectSetKeepAlive); 0 = off
      keepalive_count: 5
      connect_timeout: 10            # seconds per connection attempt
      max_concurrent_ops_per_host: 8
      reconnect: {initial_delay: 0.5, max_delay: 30, multiplier: 2, jitter: 0.1}
      hosts:
        - id: host1
          host: 192.168.1.10                       # optional; must match the URI's host
          uri: qemu+tcp://192.168.1.10/system      # optional when host is given: ssh
          tags: [production, zone-a]
      spice:
        vms:
          - vm_id: vm1
            server_addr: 192.168.1.10
            port: 5900                  # plain port; tls_port for TLS
            password_file: vm1.pw       # or password: "..." (never printed)
            channels: [Main, Display, Inputs, Cursor]

``TransportConfig`` holds the pool settings the ``HostConnection`` pool uses plus the
hosts and Spice VMs to register; ``TransportConfig()`` is the seed's
``TransportConfig::default()``.  ``load_transport_config(path_or_text)`` reads it with
``yaml.safe_load`` and turns every problem into one ``VMControlConfigError`` whose lines
name the field path (``transport.hosts[2].uri: ...``).  Unknown keys are errors (a typo
must not silently fall back to a default), host and VM ids are unique, and passwords are
``SecretStr`` so no repr, str or log line shows them.  Relative file names
(``password_file``, ``tls_ca_file``) are taken relative to the configuration file.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Self, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cargobay.vmcontrol.spice.constants import MAX_PASSWORD_LENGTH, ChannelType
from cargobay.vmcontrol.uri import LibvirtUri, VMControlConfigError, normalize_host

__all__ = [
    "HostInfo",
    "ReconnectBackoff",
    "SpiceChannelType",
    "SpiceConfig",
    "SpiceVmConfig",
    "TransportConfig",
    "TransportConfigError",
    "VMControlConfigError",
    "load_transport_config",
]

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_ID_HELP: Final = "letters, digits, '_', '.', '-', starting with a letter or digit, <= 63 chars"


class TransportConfigError(VMControlConfigError):
    """The transport configuration is invalid; ``problems`` lists (field path, message)."""

    code = "transport_config_invalid"

    def __init__(self, label: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        if len(lines) == 1:
            text = f"{label}: {lines[0]}"
        else:
            text = f"{label}: {len(lines)} problems:\n  " + "\n  ".join(lines)
        super().__init__(text)


class _AtPath(ValueError):
    """A validation problem below the field being validated (``sub`` like ``[3].id``)."""

    def __init__(self, sub: str, message: str) -> None:
        super().__init__(message)
        self.sub = sub
        self.message = message


def _check_id(value: str, what: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"{value!r} is not a valid {what} ({_ID_HELP})")
    return value


def _resolve(path: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if path is None or path.is_absolute() or base is None:
        return path
    return Path(base) / path


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """``hosts:`` with nothing after it is YAML null: read it as the default."""
        if isinstance(data, Mapping) and any(v is None for v in data.values()):
            nullable = {
                name
                for name, field in cls.model_fields.items()
                if not field.is_required() and field.default is not None
            }
            return {k: v for k, v in data.items() if not (v is None and k in nullable)}
        return data


_M = TypeVar("_M", bound=_Model)


# --- pool settings ----------------------------------------------------------------------


class ReconnectBackoff(_Model):
    """Exponential backoff between reconnect attempts to a host that went away."""

    initial_delay: Annotated[float, Field(gt=0, le=3600)] = 0.5
    max_delay: Annotated[float, Field(gt=0, le=3600)] = 30.0
    multiplier: Annotated[float, Field(ge=1, le=10)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Each delay is spread by up to +-jitter of itself, so hosts do not retry in step."""
    max_attempts: Annotated[int, Field(ge=1)] | None = None
    """None: keep trying (the host's health says it is down meanwhile)."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.max_delay < self.initial_delay:
            raise _AtPath(
                "max_delay",
                f"{self.max_delay} is below initial_delay ({self.initial_delay})",
            )
        return self

    def delay(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt`` (0-based), without jitter."""
        return min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt))


# --- libvirt hosts ----------------------------------------------------------------------


class HostInfo(_Model):
    """A libvirt host of the pool: its id, how to reach it, and tags for placement.

    ``uri`` may be left out when ``host`` is given: the seed's default transport, ssh
    (``qemu+ssh://HOST/system``), is used.  ``host`` follows the URI (``None`` for a
    local URI) and, when both are given, must name the same host.
    """

    id: str
    uri: LibvirtUri
    host: str | None = None
    tags: tuple[str, ...] = ()
    max_concurrent_ops: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Overrides ``TransportConfig.max_concurrent_ops_per_host`` for this host."""

    @model_validator(mode="before")
    @classmethod
    def _default_uri(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("uri") is None and data.get("host"):
            host = data["host"]
            if isinstance(host, str):
                try:
                    canonical = normalize_host(host)
                except ValueError as err:
                    raise _AtPath("host", str(err)) from None
                shown = f"[{canonical}]" if ":" in canonical else canonical
                return {**data, "uri": f"qemu+ssh://{shown}/system"}
        return data

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "host id")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else normalize_host(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for i, tag in enumerate(value):
            if not _ID_RE.match(tag):
                raise _AtPath(f"[{i}]", f"{tag!r} is not a valid tag ({_ID_HELP})")
            if tag in seen:
                raise _AtPath(f"[{i}]", f"tag {tag!r} is given twice")
            seen.add(tag)
        return value

    @model_validator(mode="after")
    def _host_matches_uri(self) -> Self:
        if self.host is None:
            object.__setattr__(self, "host", self.uri.host)
        elif self.uri.host is None:
            raise _AtPath(
                "host",
                f"{self.host!r} is given but the URI {str(self.uri)!r} is local; "
                "drop host or use a remote URI such as qemu+ssh://HOST/system",
            )
        elif self.host != self.uri.host:
            raise _AtPath(
                "host",
                f"{self.host!r} differs from the URI's host {self.uri.host!r}; "
                "give one host (or leave host out)",
            )
        return self

    @classmethod
    def new(cls, id: str, host: str | None = None, *, tags: Iterable[str] = ()) -> HostInfo:
        """``HostInfo::new(id, host)`` of the seed: ssh to ``host`` unless ``with_uri``."""
        return _validated(cls, {"id": id, "host": host, "tags": tuple(tags)}, f"host {id!r}")

    def with_uri(self, uri: str | LibvirtUri) -> HostInfo:
        """A copy reaching the host through ``uri``; ``host`` follows the new URI."""
        data = self.model_dump(exclude={"uri", "host"})
        return _validated(type(self), {**data, "uri": uri}, f"host {self.id!r}")

    def with_tags(self, *tags: str) -> HostInfo:
        data = {**self.model_dump(), "tags": tags}
        return _validated(type(self), data, f"host {self.id!r}")


# --- Spice VMs --------------------------------------------------------------------------


class SpiceChannelType(enum.StrEnum):
    """The seed's ``SpiceChannelType`` names (as written in the YAML)."""

    MAIN = "Main"
    DISPLAY = "Display"
    INPUTS = "Inputs"
    CURSOR = "Cursor"
    PLAYBACK = "Playback"
    RECORD = "Record"
    USB_REDIR = "UsbRedir"
    SMART_CARD = "SmartCard"
    WEB_DAV = "WebDav"
    PORT = "Port"

    @property
    def wire(self) -> ChannelType:
        """The channel type number on the Spice wire."""
        return ChannelType[self.name.replace("_", "")]

    @classmethod
    def parse(cls, value: object) -> SpiceChannelType:
        """By seed name, case-insensitively and ignoring '_'/'-' (``usb_redir``)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.replace("_", "").replace("-", "").lower()
            for member in cls:
                if member.value.lower() == key:
                    return member
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"{value!r} is not a Spice channel type; use one of {names}")


_MULTI_INSTANCE: Final = frozenset({SpiceChannelType.USB_REDIR, SpiceChannelType.PORT})
"""Channel types a VM may have several of (one per redirected device or port)."""

_DEFAULT_CHANNELS: Final = (
    SpiceChannelType.MAIN,
    SpiceChannelType.DISPLAY,
    SpiceChannelType.INPUTS,
    SpiceChannelType.CURSOR,
)


class SpiceVmConfig(_Model):
    """How to reach one VM's Spice server, and which channels to open.

    ``port`` is the plain port, ``tls_port`` the TLS one (QEMU's ``port=``/``tls-port=``).
    ``tls`` says whether to use TLS; left out, it is true exactly when only a
    ``tls_port`` is given.  The seed's form ``port: 5901`` with ``tls: true`` (and no
    ``tls_port``) means 5901 speaks TLS: it is read as ``tls_port: 5901``.
    """

    vm_id: str
    server_addr: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: bool | None = None
    tls_verify: bool = True
    tls_ca_file: Path | None = None
    tls_host_subject: str | None = None
    """The server certificate's subject, when it does not match server_addr."""
    password: SecretStr | None = None
    password_file: Path | None = None
    channels: tuple[SpiceChannelType, ...] = _DEFAULT_CHANNELS

    @model_validator(mode="before")
    @classmethod
    def _seed_tls_form(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and data.get("tls") is True
            and data.get("tls_port") is None
            and data.get("port") is not None
        ):
            return {**{k: v for k, v in data.items() if k != "port"}, "tls_port": data["port"]}
        return data

    @field_validator("vm_id")
    @classmethod
    def _vm_id(cls, value: str) -> str:
        return _check_id(value, "vm id")

    @field_validator("server_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        return normalize_host(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) > MAX_PASSWORD_LENGTH:
            raise ValueError(
                f"is longer than the {MAX_PASSWORD_LENGTH} bytes a Spice server accepts"
            )
        return value

    @field_validator("password_file", "tls_ca_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("channels", mode="before")
    @classmethod
    def _parse_channels(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(SpiceChannelType.parse(item))
                except ValueError as err:
                    raise _AtPath(f"[{i}]", str(err)) from None
            return tuple(out)
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[SpiceChannelType, ...]) -> tuple[SpiceChannelType, ...]:
        if SpiceChannelType.MAIN not in value:
            raise ValueError("must include Main (the control channel every session needs)")
        seen: set[SpiceChannelType] = set()
        for i, channel in enumerate(value):
            if channel in seen and channel not in _MULTI_INSTANCE:
                raise _AtPath(
                    f"[{i}]",
                    f"{channel.value} is listed twice (only UsbRedir and Port may repeat)",
                )
            seen.add(channel)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.port is None and self.tls_port is None:
            raise _AtPath("port", "give port (plain) or tls_port (TLS), or both")
        if self.password is not None and self.password_file is not None:
            raise _AtPath("password_file", "give password or password_file, not both")
        if self.tls is None:
            object.__setattr__(self, "tls", self.port is None)
        elif self.tls and self.tls_port is None:  # pragma: no cover - the before hook moved it
            raise _AtPath("tls_port", "tls: true needs a tls_port")
        elif not self.tls and self.port is None:
            raise _AtPath("tls", "is false but only a tls_port is given; give port too")
        if self.tls_port is None:
            for name, given in (
                ("tls_ca_file", self.tls_ca_file is not None),
                ("tls_host_subject", self.tls_host_subject is not None),
                ("tls_verify", not self.tls_verify),
            ):
                if given:
                    raise _AtPath(name, "applies to TLS only; give tls_port")
        return self

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls)

    @property
    def connect_port(self) -> int:
        """The port the main channel connects to."""
        port = self.tls_port if self.uses_tls else self.port
        assert port is not None  # _consistent guarantees it
        return port

    def resolve_password(self) -> str | None:
        """The password, reading ``password_file`` now (one trailing newline dropped)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except OSError as err:
            raise VMControlConfigError(
                f"spice vm {self.vm_id!r}: password_file {str(self.password_file)!r} cannot "
                f"be read: {err.strerror or err}"
            ) from err
        secret = text.removesuffix("\n").removesuffix("\r")
        if len(secret.encode()) > MAX_PASSWORD_LENGTH:
            raise VMControlConfigError(
                f"spice vm {self.vm_id!r}: the password in {str(self.password_file)!r} is "
                f"longer than the {MAX_PASSWORD_LENGTH} bytes a Spice server accepts"
            )
        return secret


class SpiceConfig(_Model):
    vms: tuple[SpiceVmConfig, ...] = ()

    @field_validator("vms")
    @classmethod
    def _unique(cls, value: tuple[SpiceVmConfig, ...]) -> tuple[SpiceVmConfig, ...]:
        first: dict[str, int] = {}
        for i, vm in enumerate(value):
            if vm.vm_id in first:
                raise _AtPath(
                    f"[{i}].vm_id",
                    f"duplicate vm id {vm.vm_id!r} (first at vms[{first[vm.vm_id]}])",
                )
            first[vm.vm_id] = i
        return value


# --- the whole section ------------------------------------------------------------------


class TransportConfig(_Model):
    """Pool settings, libvirt hosts and Spice VMs (``transport:`` in the YAML)."""

    keepalive_interval: Annotated[int, Field(ge=0, le=3600)] = 5
    """Seconds between libvirt keepalive probes; 0 turns keepalive off."""
    keepalive_count: Annotated[int, Field(ge=0, le=100)] = 5
    """Unanswered probes before the connection counts as dead."""
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    reconnect: ReconnectBackoff = ReconnectBackoff()
    max_concurrent_ops_per_host: Annotated[int, Field(ge=1, le=1024)] = 8
    hosts: tuple[HostInfo, ...] = ()
    spice: SpiceConfig = SpiceConfig()

    @field_validator("hosts")
    @classmethod
    def _unique(cls, value: tuple[HostInfo, ...]) -> tuple[HostInfo, ...]:
        first: dict[str, int] = {}
        for i, host in enumerate(value):
            if host.id in first:
                raise _AtPath(
                    f"[{i}].id", f"duplicate host id {host.id!r} (first at hosts[{first[host.id]}])"
                )
            first[host.id] = i
        return value

    def host(self, host_id: str) -> HostInfo:
        for host in self.hosts:
            if host.id == host_id:
                return host
        raise KeyError(host_id)

    def hosts_tagged(self, tag: str) -> tuple[HostInfo, ...]:
        return tuple(h for h in self.hosts if tag in h.tags)

    def spice_vm(self, vm_id: str) -> SpiceVmConfig:
        for vm in self.spice.vms:
            if vm.vm_id == vm_id:
                return vm
        raise KeyError(vm_id)

    def ops_limit(self, host: HostInfo) -> int:
        """How many operations may run at once on ``host``."""
        return host.max_concurrent_ops or self.max_concurrent_ops_per_host


class _TransportFile(_Model):
    transport: TransportConfig = TransportConfig()


# --- loading ----------------------------------------------------------------------------


def load_transport_config(source: str | os.PathLike[str]) -> TransportConfig:
    """Read the configuration from a file path or from YAML text.

    A ``PathLike`` is a file; a ``str`` is a file when it has no newline and either
    ends in ``.yaml``/``.yml`` or names an existing file, and YAML text otherwise.
    """
    base_dir: Path | None = None
    if isinstance(source, str) and (
        "\n" in source or not (source.endswith((".yaml", ".yml")) or os.path.isfile(source))
    ):
        label, text = "<transport config>", source
    else:
        path = Path(source)
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise VMControlConfigError(
                f"{label}: cannot read the transport configuration: {err.strerror or err}"
            ) from err
        base_dir = path.resolve().parent

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise VMControlConfigError(f"{label}: not valid YAML{where}: {problem}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise VMControlConfigError(
            f"{label}: expected a mapping with a 'transport:' key, got {type(data).__name__}"
        )
    try:
        return _TransportFile.model_validate(data, context={"base_dir": base_dir}).transport
    except ValidationError as err:
        raise TransportConfigError(label, _problems(err)) from None


def _validated(cls: type[_M], data: Mapping[str, Any], label: str) -> _M:
    """``cls.model_validate(data)`` with errors as a ``TransportConfigError``."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise TransportConfigError(label, _problems(err)) from None


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in err.errors():
        loc = tuple(item["loc"])
        ctx = item.get("ctx") or {}
        cause = ctx.get("error")
        path = _format_loc(loc)
        if isinstance(cause, _AtPath):
            path = _join(path, cause.sub)
            message = cause.message
        elif isinstance(cause, ValueError):
            message = str(cause)
        elif item["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            message = "unknown key" + (f"; known keys: {', '.join(known)}" if known else "")
        elif item["type"] == "missing":
            message = "is required"
        else:
            message = item["msg"]
            if item["type"] not in ("model_type", "model_attributes_type"):
                message += f" (got {item['input']!r})" if _showable(path) else ""
        out.append((path, message))
    return out


def _showable(path: str) -> bool:
    return not path.endswith("password")


def _join(path: str, sub: str) -> str:
    if not path:
        return sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` (below _TransportFile) accepts."""
    model: Any = _TransportFile
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside ``annotation`` (``tuple[X, ...]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
