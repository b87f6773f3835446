"""libvirt connection URIs: parse, validate, explain, print back in one canonical form.

The ATP reaches its libvirt hosts through URIs of the form (libvirt's docs/uri.rst)::

    driver[+transport]://[user@][host][:port]/path[?param=value&...]

    qemu:///system                               local daemon, Unix socket
    qemu:///session                              the user's session daemon
    qemu+unix:///system?socket=/run/x/sock       local, explicit socket
    qemu+ssh://[user@]host[:22]/system           ssh binary (also libssh, libssh2)
    qemu+tcp://host[:16509]/system               plain TCP (trusted networks only)
    qemu+tls://host[:16514]/system               TLS with x509 certificates
    qemu://host/system                           a host and no transport means TLS
    qemu+ext:///system?command=/bin/tunnel       an external tunnel command

libvirt itself is lenient: it passes unknown query parameters through and accepts a
``~`` in a key file path that it never expands.  A pool that holds one long-lived
connection per host should fail at configuration time instead, with a message that
names the URI, the part that is wrong and what a valid form looks like, so this module
checks every part: the driver and its path (``/system`` or ``/session`` for qemu), the
transport, the host (DNS name, IPv4, or IPv6 in brackets), the port, the user, and each
query parameter against the transports that honour it (booleans ``0``/``1``, absolute
paths, enumerations).

``LibvirtUri`` is a frozen value: equal URIs compare equal (``host:22`` equals ``host``
for ssh; parameters are kept sorted), ``str(uri)`` is the canonical form that
``LibvirtUri.parse`` reads back to an equal value, and ``with_*`` methods return
validated copies.  It plugs into pydantic models as a string field.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from cargobay.errors import InvalidInput

__all__ = [
    "DEFAULT_PORTS",
    "LibvirtUri",
    "LibvirtUriError",
    "Transport",
    "VMControlConfigError",
    "normalize_host",
]


class VMControlConfigError(InvalidInput):
    """A VM-control setting (libvirt URI, transport configuration) is invalid."""

    code = "vmcontrol_config_invalid"


class LibvirtUriError(VMControlConfigError):
    """A libvirt URI is malformed; ``field`` names the part that is wrong."""

    code = "libvirt_uri_invalid"

    def __init__(self, uri: str, field: str, problem: str) -> None:
        self.uri = uri
        self.field = field
        self.problem = problem
        super().__init__(f"invalid libvirt URI {uri!r}: {field}: {problem}")


class Transport(enum.StrEnum):
    UNIX = "unix"
    SSH = "ssh"
    LIBSSH = "libssh"
    LIBSSH2 = "libssh2"
    TLS = "tls"
    TCP = "tcp"
    EXT = "ext"


DEFAULT_PORTS: Final[dict[Transport, int]] = {
    Transport.SSH: 22,
    Transport.LIBSSH: 22,
    Transport.LIBSSH2: 22,
    Transport.TCP: 16509,
    Transport.TLS: 16514,
}
"""The port each network transport uses when the URI gives none."""

_NETWORK: Final = frozenset(DEFAULT_PORTS)
_SSH_LIKE: Final = frozenset({Transport.SSH, Transport.LIBSSH, Transport.LIBSSH2})

_EXAMPLES: Final[dict[Transport, str]] = {
    Transport.UNIX: "qemu:///system or qemu+unix:///system?socket=/path/to/sock",
    Transport.SSH: "qemu+ssh://[user@]host[:22]/system",
    Transport.LIBSSH: "qemu+libssh://[user@]host[:22]/system",
    Transport.LIBSSH2: "qemu+libssh2://[user@]host[:22]/system",
    Transport.TLS: "qemu+tls://host[:16514]/system",
    Transport.TCP: "qemu+tcp://host[:16509]/system",
    Transport.EXT: "qemu+ext:///system?command=/path/to/tunnel",
}

_DRIVERS: Final = ("qemu", "test")
"""qemu is what the ATP drives; test is libvirt's built-in fake, handy without libvirtd."""

_QEMU_PATHS: Final = ("/system", "/session")

_HOSTNAME_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_URI_RE: Final = re.compile(
    r"(?P<scheme>[^:/?#]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?\Z",
    re.DOTALL,
)
_SCHEME_RE: Final = re.compile(r"[a-z][a-z0-9]*(?:\+[a-z0-9]+)?\Z")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.+-]+\Z")
_CONTROL_OR_SPACE: Final = re.compile(r"[\x00-\x20\x7f]")

# What quote() may leave unescaped in each part; everything else is %-encoded.
_SAFE_USER: Final = "-._~!$'()*+,;="
_SAFE_PATH: Final = "/-._~"
_SAFE_VALUE: Final = "/:,+-._~@="


# --- query parameters -------------------------------------------------------------------


def _check_bool(value: str) -> str | None:
    return None if value in ("0", "1") else "must be 0 or 1"


def _check_abs_path(value: str) -> str | None:
    if not value.startswith("/"):
        hint = " (libvirt does not expand ~)" if value.startswith("~") else ""
        return f"must be an absolute path{hint}, e.g. /root/.ssh/id_ed25519"
    if "\x00" in value:
        return "must not contain NUL"
    return None


def _check_program(value: str) -> str | None:
    """A program: a bare name looked up in PATH, or an absolute path."""
    if "/" in value:
        return _check_abs_path(value)
    if not _NAME_RE.match(value):
        return "must be a program name (looked up in PATH) or an absolute path"
    return None


def _check_command_line(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if re.search(r"[\x00-\x1f\x7f]", value):
        return "must not contain control characters"
    return None


def _check_token(value: str) -> str | None:
    if not value or _CONTROL_OR_SPACE.search(value):
        return "must be a non-empty value without spaces"
    return None


_Check = Callable[[str], "str | None"]


def _check_choice(*choices: str) -> _Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


_SSHAUTH_METHODS: Final = ("agent", "privkey", "password", "keyboard-interactive")


def _check_sshauth(value: str) -> str | None:
    known = ", ".join(_SSHAUTH_METHODS)
    if not value:
        return f"must list at least one of {known} (comma-separated)"
    methods = value.split(",")
    bad = [m for m in methods if m not in _SSHAUTH_METHODS]
    if bad:
        return f"has an unknown method {bad[0]!r}; give a comma-separated list of {known}"
    if len(set(methods)) != len(methods):
        return "lists a method twice"
    return None


_ALL: Final = frozenset(Transport)
_PARAMS: Final[dict[str, tuple[frozenset[Transport], _Check]]] = {
    "name": (_ALL, _check_token),
    "mode": (frozenset({Transport.UNIX, *_SSH_LIKE}), _check_choice("auto", "direct", "legacy")),
    "proxy": (frozenset(_SSH_LIKE), _check_choice("auto", "netcat", "native")),
    "socket": (frozenset({Transport.UNIX, *_SSH_LIKE}), _check_abs_path),
    "netcat": (frozenset(_SSH_LIKE), _check_program),
    "keyfile": (frozenset(_SSH_LIKE), _check_abs_path),
    "command": (frozenset({Transport.SSH, Transport.EXT}), _check_command_line),
    "no_verify": (frozenset({Transport.SSH, Transport.TLS}), _check_bool),
    "no_tty": (frozenset({Transport.SSH}), _check_bool),
    "known_hosts": (frozenset({Transport.LIBSSH, Transport.LIBSSH2}), _check_abs_path),
    "known_hosts_verify": (
        frozenset({Transport.LIBSSH, Transport.LIBSSH2}),
        _check_choice("normal", "auto", "ignore"),
    ),
    "sshauth": (frozenset({Transport.LIBSSH, Transport.LIBSSH2}), _check_sshauth),
    "pkipath": (frozenset({Transport.TLS}), _check_abs_path),
    "tls_priority": (frozenset({Transport.TLS}), _check_token),
}
"""Each query parameter libvirt's remote driver documents: the transports that honour it
and a check returning a problem description or None."""


def _transports_text(transports: frozenset[Transport]) -> str:
    if transports == _ALL:
        return "every transport"
    return ", ".join(t.value for t in Transport if t in transports)


# --- hosts ------------------------------------------------------------------------------


def normalize_host(host: str) -> str:
    """A host name or address in canonical form (lowercase, IPv6 compressed, no brackets).

    Raises ``ValueError`` with a description of what is wrong.
    """
    if "%" in host:
        raise ValueError(f"{host!r}: IPv6 zone ids and %-escapes are not supported in hosts")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} is neither a host name nor an IP address") from None
    name = host.lower().rstrip(".") if host.endswith(".") and host != "." else host.lower()
    if re.fullmatch(r"[0-9.]+", name):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv4 address") from None
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOSTNAME_LABEL.match(lab) for lab in labels):
        raise ValueError(
            f"{host!r} is not a valid host name (letters, digits, '-' and '.'; "
            "IPv6 addresses go in brackets)"
        )
    return name


def _show_path(path: str) -> str:
    return repr(path) if path else "an empty path"


def _is_ipv6(host: str) -> bool:
    return ":" in host


# --- the URI ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class LibvirtUri:
    """One libvirt connection URI, validated; build with ``parse`` or keyword fields.

    ``port`` is the effective port (the transport's default when the URI gives none;
    ``None`` without a network transport), ``host`` is canonical and has no brackets,
    ``params`` are (name, value) pairs sorted by name, values unescaped.
    ``explicit_transport`` records whether a local URI spelled ``+unix``.
    """

    driver: str
    transport: Transport
    path: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str], ...] = ()
    explicit_transport: bool = True

    def __post_init__(self) -> None:
        shown = self._shown()
        uri_err = LibvirtUriError

        if self.driver not in _DRIVERS:
            raise uri_err(
                shown,
                "driver",
                f"unsupported driver {self.driver!r}; use one of {', '.join(_DRIVERS)} "
                "(e.g. qemu:///system)",
            )
        if self.transport is not Transport.UNIX and not self.explicit_transport:
            object.__setattr__(self, "explicit_transport", True)

        example = _EXAMPLES[self.transport]
        if self.transport in _NETWORK:
            if not self.host:
                raise uri_err(
                    shown,
                    "host",
                    f"the {self.transport} transport needs a host, as in {example}",
                )
        elif self.host is not None and self.transport is Transport.UNIX:
            raise uri_err(
                shown,
                "host",
                f"a local (unix) URI takes no host, as in {example}; "
                "for a remote host pick a transport, e.g. qemu+ssh://host/system",
            )
        if self.host is not None:
            try:
                object.__setattr__(self, "host", normalize_host(self.host))
            except ValueError as err:
                raise uri_err(shown, "host", str(err)) from None

        if self.user is not None:
            if self.host is None:
                raise uri_err(
                    shown, "user", f"a user needs a remote host, as in {_EXAMPLES[Transport.SSH]}"
                )
            if not self.user or re.search(r"[\x00-\x1f\x7f@/:\s]", self.user):
                raise uri_err(
                    shown,
                    "user",
                    f"{self.user!r} is not a user name (no spaces, '@', ':' or '/')",
                )

        default_port = DEFAULT_PORTS.get(self.transport)
        if self.port is not None:
            if self.host is None:
                raise uri_err(shown, "port", f"a port needs a host, as in {example}")
            if isinstance(self.port, bool) or not isinstance(self.port, int):
                raise uri_err(shown, "port", f"{self.port!r} is not a number")
            if not 1 <= self.port <= 65535:
                raise uri_err(shown, "port", f"{self.port} is outside 1-65535")
        elif default_port is not None:
            object.__setattr__(self, "port", default_port)

        if self.driver == "qemu" and self.path not in _QEMU_PATHS:
            raise uri_err(
                shown,
                "path",
                f"{_show_path(self.path)} is not a qemu daemon; use /system or /session, "
                f"as in {example}",
            )
        if self.driver == "test" and (
            not self.path.startswith("/") or _CONTROL_OR_SPACE.search(self.path)
        ):
            raise uri_err(
                shown,
                "path",
                f"{_show_path(self.path)}: the test driver takes /default or an absolute "
                "path to a host definition file, as in test:///default",
            )

        self._check_params(shown)

    def _check_params(self, shown: str) -> None:
        seen: dict[str, str] = {}
        for pair in self.params:
            name, value = pair
            field = f"query parameter {name!r}"
            if name in seen:
                raise LibvirtUriError(shown, field, "is given twice")
            seen[name] = value
            known = _PARAMS.get(name)
            if known is None:
                raise LibvirtUriError(
                    shown,
                    field,
                    "is not a libvirt URI parameter; known: " + ", ".join(sorted(_PARAMS)),
                )
            transports, check = known
            if self.transport not in transports:
                raise LibvirtUriError(
                    shown,
                    field,
                    f"does not apply to the {self.transport} transport "
                    f"(only {_transports_text(transports)})",
                )
            problem = check(value)
            if problem:
                raise LibvirtUriError(shown, field, f"{value!r} {problem}")
        if seen.get("proxy") == "native" and "netcat" in seen:
            raise LibvirtUriError(
                shown, "query parameter 'netcat'", "is not allowed with proxy=native"
            )
        if self.transport is Transport.EXT and "command" not in seen:
            raise LibvirtUriError(
                shown,
                "query parameter 'command'",
                f"the ext transport needs one, as in {_EXAMPLES[Transport.EXT]}",
            )
        object.__setattr__(self, "params", tuple(sorted(seen.items())))

    def _shown(self) -> str:
        """The URI for error messages, before validation (best effort)."""
        try:
            return self._render()
        except Exception:  # only for a message: show whatever was given
            return f"{self.driver}+{self.transport}://{self.host or ''}{self.path}"

    # --- parsing and printing -----------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> LibvirtUri:
        """Parse ``text``; raise ``LibvirtUriError`` naming the part that is wrong."""
        if not isinstance(text, str):
            raise LibvirtUriError(repr(text), "uri", "must be a string like qemu:///system")
        shown = _redact(text)
        match = _URI_RE.match(text.strip())
        if match is None:
            raise LibvirtUriError(
                shown,
                "scheme",
                "expected driver[+transport]://[user@][host][:port]/path, "
                "e.g. qemu:///system or qemu+ssh://root@host/system",
            )
        scheme = match["scheme"].lower()
        if not _SCHEME_RE.match(scheme):
            raise LibvirtUriError(
                shown, "scheme", f"{match['scheme']!r} is not driver[+transport], e.g. qemu+ssh"
            )
        driver, _, transport_name = scheme.partition("+")
        if match["fragment"] is not None:
            raise LibvirtUriError(shown, "fragment", "libvirt URIs have no '#' part")

        user, host, port = _split_authority(shown, match["authority"])

        if transport_name:
            try:
                transport = Transport(transport_name)
            except ValueError:
                raise LibvirtUriError(
                    shown,
                    "transport",
                    f"unknown transport {transport_name!r}; use one of "
                    + ", ".join(t.value for t in Transport),
                ) from None
            explicit = True
        else:
            transport = Transport.TLS if host is not None else Transport.UNIX
            explicit = host is not None

        params: list[tuple[str, str]] = []
        query = match["query"]
        if query:
            for item in query.split("&"):
                name, eq, value = item.partition("=")
                name = unquote(name)
                if not name or not eq:
                    raise LibvirtUriError(
                        shown,
                        f"query parameter {name or item!r}",
                        "write parameters as name=value joined by '&'",
                    )
                params.append((name, unquote(value)))
        try:
            return cls(
                driver=driver,
                transport=transport,
                path=unquote(match["path"]),
                host=host,
                user=user,
                port=port,
                params=tuple(params),
                explicit_transport=explicit,
            )
        except LibvirtUriError as err:
            raise LibvirtUriError(shown, err.field, err.problem) from None

    def _render(self) -> str:
        if self.transport is Transport.UNIX and not self.explicit_transport:
            scheme = self.driver
        else:
            scheme = f"{self.driver}+{self.transport}"
        authority = ""
        if self.host is not None:
            if self.user is not None:
                authority = quote(self.user, safe=_SAFE_USER) + "@"
            authority += f"[{self.host}]" if _is_ipv6(self.host) else self.host
            if self.port is not None and self.port != DEFAULT_PORTS.get(self.transport):
                authority += f":{self.port}"
        text = f"{scheme}://{authority}{quote(self.path, safe=_SAFE_PATH)}"
        if self.params:
            text += "?" + "&".join(
                f"{quote(k, safe='_')}={quote(v, safe=_SAFE_VALUE)}" for k, v in self.params
            )
        return text

    def __str__(self) -> str:
        return self._render()

    def __repr__(self) -> str:
        return f"LibvirtUri({self._render()!r})"

    # --- properties and copies ----------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True when no network transport is involved (a Unix socket on this machine)."""
        return self.transport is Transport.UNIX

    @property
    def on_this_machine(self) -> bool:
        """Local, or a network transport to a loopback address: sockets and ports the
        daemon on that host opens are reachable from here too."""
        return self.is_local or self.host in ("127.0.0.1", "::1", "localhost")

    @property
    def query(self) -> dict[str, str]:
        """The query parameters as a new dict."""
        return dict(self.params)

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    @property
    def remote_name(self) -> str:
        """The URI the daemon opens for us: the ``name`` parameter, else driver://path."""
        return self.param("name") or f"{self.driver}://{self.path}"

    def with_user(self, user: str | None) -> LibvirtUri:
        """A copy connecting as ``user`` (``None`` drops it)."""
        return self._replace(user=user)

    def with_port(self, port: int | None) -> LibvirtUri:
        """A copy on ``port`` (``None``: the transport's default)."""
        return self._replace(port=port)

    def with_params(self, **params: str | None) -> LibvirtUri:
        """A copy with the given parameters set (``None`` removes one)."""
        merged = dict(self.params)
        for name, value in params.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return self._replace(params=tuple(merged.items()))

    def _replace(self, **changes: Any) -> LibvirtUri:
        return dataclasses.replace(self, **changes)

    # --- pydantic -----------------------------------------------------------------------

    @classmethod
    def _coerce(cls, value: object) -> LibvirtUri:
        if isinstance(value, LibvirtUri):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise ValueError(f"expected a libvirt URI string, got {type(value).__name__}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.to_string_ser_schema(when_used="always")
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "libvirt-uri", "examples": ["qemu:///system"]}


def _split_authority(shown: str, authority: str) -> tuple[str | None, str | None, int | None]:
    """``[user@]host[:port]`` -> (user, host, port); host keeps IPv6 brackets."""
    if not authority:
        return None, None, None
    user: str | None = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        if ":" in userinfo:
            raise LibvirtUriError(
                shown,
                "user",
                "passwords do not belong in a libvirt URI; use ssh keys (keyfile=...) "
                "or an auth callback",
            )
        user = unquote(userinfo)
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise LibvirtUriError(shown, "host", "an IPv6 address in '[' lacks its ']'")
        host = authority[: end + 1]
        rest = authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise LibvirtUriError(shown, "host", f"unexpected {rest!r} after ']'")
            port_text = rest[1:]
    else:
        host, colon, port_text_ = authority.partition(":")
        if colon:
            if ":" in port_text_:
                raise LibvirtUriError(
                    shown, "host", "IPv6 addresses go in brackets, as in qemu+ssh://[::1]/system"
                )
            port_text = port_text_
    if not host:
        raise LibvirtUriError(shown, "host", "is empty before the port or after the user")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise LibvirtUriError(shown, "port", f"{port_text!r} is not a port number (1-65535)")
        port = int(port_text)
    return user, host, port


def _redact(text: str) -> str:
    """The URI with any password in its user part hidden (for messages)."""
    return re.sub(r"(://[^/?#@:]*):[^/?#@]*@", r"\1:***@", text)
