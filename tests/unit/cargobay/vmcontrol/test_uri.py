"""libvirt URI parsing: every documented form, canonical printing, each error path, and a
hypothesis round trip through str() and parse()."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cargobay.errors import InvalidInput
from cargobay.vmcontrol.uri import (
    DEFAULT_PORTS,
    LibvirtUri,
    LibvirtUriError,
    Transport,
    VMControlConfigError,
    normalize_host,
)

# --- valid forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "path", "local"),
    [
        ("qemu:///system", Transport.UNIX, None, None, "/system", True),
        ("qemu:///session", Transport.UNIX, None, None, "/session", True),
        ("qemu+unix:///system", Transport.UNIX, None, None, "/system", True),
        ("qemu+ssh://192.168.1.10/system", Transport.SSH, "192.168.1.10", 22, "/system", False),
        ("qemu+ssh://192.168.1.10:22/system", Transport.SSH, "192.168.1.10", 22, "/system", False),
        ("qemu+ssh://host:2222/session", Transport.SSH, "host", 2222, "/session", False),
        ("qemu+libssh://h/system", Transport.LIBSSH, "h", 22, "/system", False),
        ("qemu+libssh2://h/system", Transport.LIBSSH2, "h", 22, "/system", False),
        ("qemu+tcp://192.168.1.10/system", Transport.TCP, "192.168.1.10", 16509, "/system", False),
        ("qemu+tcp://h:16509/system", Transport.TCP, "h", 16509, "/system", False),
        (
            "qemu+tls://h.example.org/system",
            Transport.TLS,
            "h.example.org",
            16514,
            "/system",
            False,
        ),
        ("qemu://h/system", Transport.TLS, "h", 16514, "/system", False),
        ("qemu+tcp://[::1]/system", Transport.TCP, "::1", 16509, "/system", False),
        ("qemu+ext:///system?command=/bin/tunnel", Transport.EXT, None, None, "/system", False),
        ("test:///default", Transport.UNIX, None, None, "/default", True),
        ("test+tcp://localhost:5000/default", Transport.TCP, "localhost", 5000, "/default", False),
    ],
)
def test_documented_forms(
    text: str, transport: Transport, host: str | None, port: int | None, path: str, local: bool
) -> None:
    uri = LibvirtUri.parse(text)
    assert uri.transport is transport
    assert uri.host == host
    assert uri.port == port
    assert uri.path == path
    assert uri.is_local is local
    assert LibvirtUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("qemu:///system", "qemu:///system"),
        ("qemu+unix:///system", "qemu+unix:///system"),
        ("qemu+ssh://root@192.168.1.10:22/system", "qemu+ssh://root@192.168.1.10/system"),
        ("QEMU+TCP://Host.Example.ORG:16509/system", "qemu+tcp://host.example.org/system"),
        ("qemu://h/system", "qemu+tls://h/system"),
        ("qemu+tls://h:16515/system", "qemu+tls://h:16515/system"),
        ("qemu+tcp://[0:0:0:0:0:0:0:1]:1234/system", "qemu+tcp://[::1]:1234/system"),
        ("qemu+ssh://h./system", "qemu+ssh://h/system"),
        ("qemu:///system?", "qemu:///system"),
        (
            "qemu+ssh://h/system?no_tty=1&keyfile=/k&no_verify=0",
            "qemu+ssh://h/system?keyfile=/k&no_tty=1&no_verify=0",
        ),
        (
            "qemu+tls://h/system?tls_priority=NORMAL:-VERS-SSL3.0:+VERS-TLS1.2",
            "qemu+tls://h/system?tls_priority=NORMAL:-VERS-SSL3.0:+VERS-TLS1.2",
        ),
        ("qemu+ssh://h/system?keyfile=/a%20b", "qemu+ssh://h/system?keyfile=/a%20b"),
        ("qemu+ssh://h/system?keyfile=/a%26b", "qemu+ssh://h/system?keyfile=/a%26b"),
        ("qemu:///system?name=qemu:///session", "qemu:///system?name=qemu:///session"),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    uri = LibvirtUri.parse(text)
    assert str(uri) == canonical
    assert repr(uri) == f"LibvirtUri({canonical!r})"
    assert LibvirtUri.parse(canonical) == uri


def test_plus_in_a_value_is_not_a_space() -> None:
    uri = LibvirtUri.parse("qemu+tls://h/system?tls_priority=NORMAL:+VERS-TLS1.3")
    assert uri.param("tls_priority") == "NORMAL:+VERS-TLS1.3"


def test_escaped_values_are_unescaped() -> None:
    uri = LibvirtUri.parse("qemu+ssh://h/system?keyfile=/home/a%20b/key%26x")
    assert uri.param("keyfile") == "/home/a b/key&x"
    assert uri.query == {"keyfile": "/home/a b/key&x"}


def test_explicit_default_port_equals_omitted_port() -> None:
    for transport, port in DEFAULT_PORTS.items():
        a = LibvirtUri.parse(f"qemu+{transport}://h:{port}/system")
        b = LibvirtUri.parse(f"qemu+{transport}://h/system")
        assert a == b
        assert hash(a) == hash(b)
        assert a.port == port


def test_user_and_with_user() -> None:
    uri = LibvirtUri.parse("qemu+ssh://192.168.1.10/system")
    assert uri.user is None
    root = uri.with_user("root")
    assert str(root) == "qemu+ssh://root@192.168.1.10/system"
    assert root.user == "root"
    assert root.with_user(None) == uri
    assert uri.user is None  # the original is untouched


def test_with_user_on_a_local_uri_is_an_error() -> None:
    with pytest.raises(LibvirtUriError, match="user: a user needs a remote host"):
        LibvirtUri.parse("qemu:///system").with_user("root")


def test_with_user_rejects_bad_names() -> None:
    with pytest.raises(LibvirtUriError, match="user: 'a b' is not a user name"):
        LibvirtUri.parse("qemu+ssh://h/system").with_user("a b")


def test_with_port_and_with_params() -> None:
    uri = LibvirtUri.parse("qemu+ssh://h/system")
    assert str(uri.with_port(2222)) == "qemu+ssh://h:2222/system"
    assert uri.with_port(2222).with_port(None) == uri
    keyed = uri.with_params(keyfile="/root/.ssh/id", no_tty="1")
    assert str(keyed) == "qemu+ssh://h/system?keyfile=/root/.ssh/id&no_tty=1"
    assert keyed.with_params(keyfile=None, no_tty=None) == uri
    with pytest.raises(LibvirtUriError, match="'no_tty': 'x' must be 0 or 1"):
        uri.with_params(no_tty="x")


def test_ipv6_hosts_are_bracketed_and_compressed() -> None:
    uri = LibvirtUri.parse("qemu+ssh://root@[FE80:0::1]:2200/system")
    assert uri.host == "fe80::1"
    assert str(uri) == "qemu+ssh://root@[fe80::1]:2200/system"
    built = LibvirtUri(driver="qemu", transport=Transport.TCP, host="::1", path="/system")
    assert str(built) == "qemu+tcp://[::1]/system"


def test_remote_name() -> None:
    assert LibvirtUri.parse("qemu+ssh://h/session").remote_name == "qemu:///session"
    uri = LibvirtUri.parse("qemu+ssh://h/system?name=qemu:///session")
    assert uri.remote_name == "qemu:///session"


def test_keyword_construction_is_validated() -> None:
    with pytest.raises(LibvirtUriError, match="host: the tls transport needs a host"):
        LibvirtUri(driver="qemu", transport=Transport.TLS, path="/system")
    with pytest.raises(LibvirtUriError, match="port: 70000 is outside 1-65535"):
        LibvirtUri(driver="qemu", transport=Transport.TCP, host="h", port=70000, path="/system")


def test_is_hashable_and_frozen() -> None:
    uri = LibvirtUri.parse("qemu:///system")
    assert {uri: 1}[LibvirtUri.parse("qemu:///system")] == 1
    with pytest.raises(AttributeError):
        uri.host = "x"  # type: ignore[misc]


def test_documented_parameters_per_transport() -> None:
    ok = [
        "qemu+ssh://h/system?mode=direct&proxy=native&socket=/run/s&keyfile=/k&command=ssh"
        "&no_verify=1&no_tty=1&name=qemu:///system",
        "qemu+ssh://h/system?netcat=/opt/nc&proxy=netcat",
        "qemu+libssh2://u@h/system?known_hosts=/root/.ssh/known_hosts&known_hosts_verify=auto"
        "&sshauth=privkey,agent&keyfile=/k&netcat=nc&mode=legacy&proxy=auto&socket=/s",
        "qemu+libssh://u@h/system?known_hosts_verify=ignore&sshauth=keyboard-interactive",
        "qemu+tls://h/system?pkipath=/tmp/pki/client&no_verify=1&tls_priority=NORMAL",
        "qemu+unix:///system?socket=/opt/libvirt/run/libvirt/libvirt-sock&mode=auto",
        "qemu+tcp://h/system?name=qemu:///system",
        "qemu+ext:///system?command=/usr/bin/tunnel --to host",
    ]
    for text in ok:
        uri = LibvirtUri.parse(text)
        assert LibvirtUri.parse(str(uri)) == uri


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "scheme: expected driver[+transport]://"),
        ("qemu", "scheme: expected driver[+transport]://"),
        ("qemu:/system", "scheme: expected driver[+transport]://"),
        ("/var/run/libvirt/libvirt-sock", "scheme: expected"),
        ("qemu+ssh+x://h/system", "scheme: 'qemu+ssh+x' is not driver[+transport]"),
        ("+ssh://h/system", "scheme: '+ssh' is not driver"),
        ("xen:///system", "driver: unsupported driver 'xen'"),
        ("qemu+foo://h/system", "transport: unknown transport 'foo'"),
        ("qemu+ssh:///system", "host: the ssh transport needs a host, as in qemu+ssh://"),
        ("qemu+libssh2:///system", "host: the libssh2 transport needs a host"),
        ("qemu+tcp:///system", "host: the tcp transport needs a host, as in qemu+tcp://host"),
        ("qemu+tls:///system", "host: the tls transport needs a host"),
        ("qemu+unix://h/system", "host: a local (unix) URI takes no host"),
        ("qemu+ssh://root@/system", "host: is empty"),
        ("qemu+ssh://:22/system", "host: is empty"),
        ("qemu+ssh://::1/system", "host: IPv6 addresses go in brackets"),
        ("qemu+ssh://[::1/system", "host: an IPv6 address in '[' lacks its ']'"),
        ("qemu+ssh://[::1]x/system", "host: unexpected 'x' after"),
        ("qemu+ssh://[h]/system", "host: 'h' in brackets is not an IPv6 address"),
        ("qemu+ssh://[fe80::1%25eth0]/system", "zone ids"),
        ("qemu+ssh://bad_host/system", "host: 'bad_host' is not a valid host name"),
        ("qemu+ssh://-h/system", "host: '-h' is not a valid host name"),
        ("qemu+ssh://300.1.1.1/system", "host: '300.1.1.1' is not a valid IPv4 address"),
        ("qemu+ssh://a..b/system", "host: 'a..b' is not a valid host name"),
        ("qemu+ssh://h:0/system", "port: 0 is outside 1-65535"),
        ("qemu+ssh://h:65536/system", "port: 65536 is outside 1-65535"),
        ("qemu+ssh://h:ssh/system", "port: 'ssh' is not a port number"),
        ("qemu+ssh://h:-1/system", "port: '-1' is not a port number"),
        ("qemu+ssh://h:/system", "port: '' is not a port number"),
        ("qemu+ssh://a b@h/system", "user: 'a b' is not a user name"),
        ("qemu+ext://u@/system?command=x", "host: is empty"),
        ("qemu:///systen", "path: '/systen' is not a qemu daemon; use /system or /session"),
        ("qemu+ssh://h", "path: an empty path is not a qemu daemon"),
        ("qemu+ssh://h/", "path: '/' is not a qemu daemon"),
        ("qemu+ssh://h/system/", "path: '/system/' is not a qemu daemon"),
        ("test://", "path: an empty path: the test driver takes /default"),
        ("qemu+tls://h/system#frag", "fragment: libvirt URIs have no '#' part"),
        ("qemu:///system?foo=1", "query parameter 'foo': is not a libvirt URI parameter; known:"),
        ("qemu:///system?no_tty", "query parameter 'no_tty': write parameters as name=value"),
        ("qemu:///system?=1", "query parameter '=1': write parameters as name=value"),
        ("qemu:///system?a=1&&b=2", "query parameter '': write parameters"),
        ("qemu+ssh://h/system?no_tty=1&no_tty=0", "query parameter 'no_tty': is given twice"),
        ("qemu+ssh://h/system?no_tty=yes", "query parameter 'no_tty': 'yes' must be 0 or 1"),
        ("qemu+tls://h/system?no_verify=2", "query parameter 'no_verify': '2' must be 0 or 1"),
        (
            "qemu+tcp://h/system?keyfile=/k",
            "query parameter 'keyfile': does not apply to the tcp transport "
            "(only ssh, libssh, libssh2)",
        ),
        ("qemu+tls://h/system?no_tty=1", "'no_tty': does not apply to the tls transport"),
        ("qemu+ssh://h/system?pkipath=/p", "'pkipath': does not apply to the ssh transport"),
        ("qemu:///system?keyfile=/k", "'keyfile': does not apply to the unix transport"),
        ("qemu+ssh://h/system?known_hosts=/k", "'known_hosts': does not apply to the ssh"),
        ("qemu+libssh2://h/system?no_tty=1", "'no_tty': does not apply to the libssh2"),
        ("qemu+ssh://h/system?keyfile=~/.ssh/id", "'~/.ssh/id' must be an absolute path ("),
        ("qemu+ssh://h/system?keyfile=id_rsa", "'keyfile': 'id_rsa' must be an absolute path"),
        ("qemu+ssh://h/system?keyfile=", "'keyfile': '' must be an absolute path"),
        ("qemu+ssh://h/system?socket=/a%00b", "'socket': '/a\\x00b' must not contain NUL"),
        ("qemu+tls://h/system?pkipath=pki", "'pkipath': 'pki' must be an absolute path"),
        ("qemu+ssh://h/system?netcat=./nc", "'netcat': './nc' must be an absolute path"),
        ("qemu+ssh://h/system?netcat=n%20c", "'netcat': 'n c' must be a program name"),
        ("qemu+ssh://h/system?proxy=native&netcat=nc", "'netcat': is not allowed with proxy"),
        ("qemu+ssh://h/system?mode=fast", "'mode': 'fast' must be one of auto, direct, legacy"),
        ("qemu+ssh://h/system?proxy=x", "'proxy': 'x' must be one of auto, netcat, native"),
        ("qemu+libssh://h/system?known_hosts_verify=no", "must be one of normal, auto, ignore"),
        (
            "qemu+libssh://h/system?sshauth=kerberos",
            "'sshauth': 'kerberos' has an unknown method 'kerberos'; give",
        ),
        ("qemu+libssh://h/system?sshauth=", "'sshauth': '' must list at least one of agent"),
        (
            "qemu+libssh://h/system?sshauth=agent,agent",
            "'sshauth': 'agent,agent' lists a method twice",
        ),
        ("qemu+tls://h/system?tls_priority=", "'tls_priority': '' must be a non-empty value"),
        ("qemu+tls://h/system?tls_priority=A%20B", "'tls_priority': 'A B' must be a non-empty"),
        ("qemu:///system?name=", "'name': '' must be a non-empty value"),
        ("qemu+ext:///system", "query parameter 'command': the ext transport needs one"),
        ("qemu+ext:///system?command=%20", "'command': ' ' must not be empty"),
        ("qemu+ext:///system?command=a%0Ab", "must not contain control characters"),
    ],
)
def test_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(LibvirtUriError) as info:
        LibvirtUri.parse(text)
    err = info.value
    text_shown = str(err)
    assert message in text_shown
    assert "\n" not in text_shown
    assert text_shown.startswith(f"invalid libvirt URI {text!r}: {err.field}: ")
    assert isinstance(err, VMControlConfigError)
    assert isinstance(err, InvalidInput)
    assert isinstance(err, ValueError)
    assert err.status == 400


def test_password_in_the_uri_is_refused_and_not_echoed() -> None:
    with pytest.raises(LibvirtUriError, match="user: passwords do not belong") as info:
        LibvirtUri.parse("qemu+ssh://root:hunter2@h/system")
    assert "hunter2" not in str(info.value)
    assert "root:***@h" in str(info.value)


def test_non_string_input() -> None:
    with pytest.raises(LibvirtUriError, match="uri: must be a string"):
        LibvirtUri.parse(42)  # type: ignore[arg-type]


def test_normalize_host() -> None:
    assert normalize_host("Example.COM") == "example.com"
    assert normalize_host("[::FFFF:1.2.3.4]") == "::ffff:102:304"
    assert normalize_host("10.0.0.1") == "10.0.0.1"
    for bad in ["", ".", "a_b", "x" * 64, "1.2.3", "[1.2.3.4]", "a b"]:
        with pytest.raises(ValueError, match=r"\S"):
            normalize_host(bad)


# --- pydantic ---------------------------------------------------------------------------


class _Model(BaseModel):
    uri: LibvirtUri


def test_pydantic_field_accepts_strings_and_serialises_to_strings() -> None:
    model = _Model.model_validate({"uri": "qemu+ssh://root@h:22/system"})
    assert model.uri == LibvirtUri.parse("qemu+ssh://root@h/system")
    assert model.model_dump() == {"uri": "qemu+ssh://root@h/system"}
    assert model.model_dump_json() == '{"uri":"qemu+ssh://root@h/system"}'
    assert _Model(uri=model.uri).uri is model.uri
    schema = _Model.model_json_schema()
    assert schema["properties"]["uri"]["type"] == "string"


def test_pydantic_field_reports_the_uri_problem() -> None:
    with pytest.raises(ValidationError, match="host: the tcp transport needs a host"):
        _Model.model_validate({"uri": "qemu+tcp:///system"})
    with pytest.raises(ValidationError, match="expected a libvirt URI string, got int"):
        _Model.model_validate({"uri": 5})


# --- round trip property ----------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_hostname = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, max_size=3),
    st.from_regex(r"[a-z]([a-z0-9-]{0,5}[a-z0-9])?", fullmatch=True),
)
_hosts = st.one_of(
    _hostname,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_free_text = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
    max_size=12,
)
_abs_path = _free_text.map(lambda s: "/" + s)
_bool = st.sampled_from(["0", "1"])
_token = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
).filter(lambda s: not any(c.isspace() for c in s))
_program = st.one_of(_abs_path, st.from_regex(r"[A-Za-z0-9_.+-]{1,10}", fullmatch=True))
_sshauth = st.lists(
    st.sampled_from(["agent", "privkey", "password", "keyboard-interactive"]),
    min_size=1,
    max_size=4,
    unique=True,
).map(",".join)
_command_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda s: s.strip() != "")

_PARAM_VALUES: dict[str, st.SearchStrategy[str]] = {
    "name": _token,
    "mode": st.sampled_from(["auto", "direct", "legacy"]),
    "proxy": st.sampled_from(["auto", "netcat"]),
    "socket": _abs_path,
    "netcat": _program,
    "keyfile": _abs_path,
    "command": _command_line,
    "no_verify": _bool,
    "no_tty": _bool,
    "known_hosts": _abs_path,
    "known_hosts_verify": st.sampled_from(["normal", "auto", "ignore"]),
    "sshauth": _sshauth,
    "pkipath": _abs_path,
    "tls_priority": _token,
}
_SSH_COMMON = ["name", "mode", "proxy", "socket", "netcat", "keyfile"]
_BY_TRANSPORT: dict[Transport, list[str]] = {
    Transport.UNIX: ["name", "mode", "socket"],
    Transport.SSH: [*_SSH_COMMON, "command", "no_verify", "no_tty"],
    Transport.LIBSSH: [*_SSH_COMMON, "known_hosts", "known_hosts_verify", "sshauth"],
    Transport.TLS: ["name", "no_verify", "pkipath", "tls_priority"],
    Transport.TCP: ["name"],
    Transport.EXT: ["name", "command"],
}
_BY_TRANSPORT[Transport.LIBSSH2] = _BY_TRANSPORT[Transport.LIBSSH]

_user = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="@/:"
    ),
    min_size=1,
    max_size=10,
).filter(lambda s: not any(c.isspace() for c in s))


@st.composite
def _uris(draw: st.DrawFn) -> LibvirtUri:
    transport = draw(st.sampled_from(list(Transport)))
    driver = draw(st.sampled_from(["qemu", "test"]))
    path = draw(st.sampled_from(["/system", "/session"]))
    if driver == "test":
        path = draw(st.sampled_from(["/default", "/etc/libvirt/test-host.xml"]))
    host = user = port = None
    if transport in DEFAULT_PORTS or (transport is Transport.EXT and draw(st.booleans())):
        host = draw(_hosts)
        user = draw(st.none() | _user)
        port = draw(st.none() | st.integers(1, 65535))
    names = draw(st.lists(st.sampled_from(_BY_TRANSPORT[transport]), unique=True, max_size=4))
    if transport is Transport.EXT and "command" not in names:
        names.append("command")
    params = tuple((name, draw(_PARAM_VALUES[name])) for name in names)
    explicit = True if transport is not Transport.UNIX else draw(st.booleans())
    return LibvirtUri(
        driver=driver,
        transport=transport,
        path=path,
        host=host,
        user=user,
        port=port,
        params=params,
        explicit_transport=explicit,
    )


@given(_uris())
def test_round_trip(uri: LibvirtUri) -> None:
    text = str(uri)
    again = LibvirtUri.parse(text)
    assert again == uri
    assert str(again) == text
    assert "#" not in text
    assert " " not in text
    if uri.host is not None and ":" in uri.host:
        assert f"[{uri.host}]" in text
        assert ipaddress.IPv6Address(uri.host)


@given(_uris(), st.booleans())
def test_explicit_default_port_spelling_parses_equal(uri: LibvirtUri, upper: bool) -> None:
    text = str(uri)
    if uri.port is not None and uri.port == DEFAULT_PORTS.get(uri.transport) and uri.host:
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        text = text.replace(f"@{host}/", f"@{host}:{uri.port}/").replace(
            f"//{host}/", f"//{host}:{uri.port}/"
        )
    scheme, sep, rest = text.partition("://")
    if upper:
        scheme = scheme.upper()
    assert LibvirtUri.parse(scheme + sep + rest) == uri


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_a_uri_error(text: str) -> None:
    try:
        uri = LibvirtUri.parse(text)
    except LibvirtUriError:
        return
    assert LibvirtUri.parse(str(uri)) == uri
