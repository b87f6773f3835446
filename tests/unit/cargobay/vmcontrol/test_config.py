"""The ATP transport YAML: the shipped example, the seed's own section 6.1, defaults,
HostInfo.with_uri, Spice VM rules, secrets kept out of output, and each error path with
the field path it names."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.vmcontrol.config import (
    HostInfo,
    ReconnectBackoff,
    SpiceChannelType,
    SpiceVmConfig,
    TransportConfig,
    TransportConfigError,
    VMControlConfigError,
    load_transport_config,
)
from cargobay.vmcontrol.spice.constants import ChannelType
from cargobay.vmcontrol.uri import LibvirtUri, Transport

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "atp-transport.yaml"

SEED_6_1 = """\
# 传输层配置
transport:
  # Libvirt 主机
  hosts:
    - id: host1
      host: 192.168.1.10
      uri: qemu+tcp://192.168.1.10/system
      tags: [production, zone-a]

    - id: host2
      host: 192.168.1.20
      uri: qemu+tls://192.168.1.20/system
      tags: [production, zone-b]

  # Spice 虚拟机
  spice:
    vms:
      - vm_id: vm1
        server_addr: 192.168.1.10
        port: 5900
        password: "optional_password"
        channels:
          - Main      # 必需
          - Display   # 显示
          - Inputs    # 输入
          - Cursor    # 光标

      - vm_id: vm2
        server_addr: 192.168.1.20
        port: 5901
        tls: true
        tls_verify: true
        channels:
          - Main
          - Display
          - Inputs
          - UsbRedir  # USB 重定向
"""


def _load(body: str) -> TransportConfig:
    return load_transport_config(textwrap.dedent(body))


def _problem(body: str) -> str:
    with pytest.raises(TransportConfigError) as info:
        _load(body)
    return str(info.value)


# --- valid configurations ---------------------------------------------------------------


def test_the_example_file_loads() -> None:
    config = load_transport_config(EXAMPLE)
    assert [h.id for h in config.hosts] == ["local", "host1", "host2", "host3", "lab-v6"]
    local = config.host("local")
    assert local.uri.is_local
    assert local.host is None
    host3 = config.host("host3")
    assert str(host3.uri) == "qemu+ssh://192.168.1.30/system"
    lab = config.host("lab-v6")
    assert lab.host == "fd00::30"
    assert lab.uri.port == 2222
    assert lab.uri.param("keyfile") == "/root/.ssh/atp_ed25519"
    assert config.ops_limit(lab) == 2
    assert config.ops_limit(local) == config.max_concurrent_ops_per_host == 8
    assert [h.id for h in config.hosts_tagged("production")] == ["host1", "host2"]
    vm2 = config.spice_vm("vm2")
    assert vm2.uses_tls
    assert vm2.connect_port == 5901
    assert vm2.tls_ca_file == EXAMPLE.parent / "pki" / "ca-cert.pem"
    assert vm2.password_file == EXAMPLE.parent / "secrets" / "vm2.spice-password"
    assert vm2.channels.count(SpiceChannelType.USB_REDIR) == 2


def test_the_example_file_loads_from_a_str_path() -> None:
    assert load_transport_config(str(EXAMPLE)) == load_transport_config(EXAMPLE)


def test_the_seed_section_6_1_loads_as_written() -> None:
    config = load_transport_config(SEED_6_1)
    host1, host2 = config.hosts
    assert host1.uri.transport is Transport.TCP
    assert host1.uri.port == 16509
    assert host1.tags == ("production", "zone-a")
    assert host2.uri.transport is Transport.TLS
    assert host2.uri.port == 16514
    vm1, vm2 = config.spice.vms
    assert vm1.port == 5900
    assert not vm1.uses_tls
    assert vm1.connect_port == 5900
    assert vm1.resolve_password() == "optional_password"
    assert vm1.channels == (
        SpiceChannelType.MAIN,
        SpiceChannelType.DISPLAY,
        SpiceChannelType.INPUTS,
        SpiceChannelType.CURSOR,
    )
    # "port: 5901" with "tls: true" is the seed's way of saying 5901 speaks TLS
    assert vm2.uses_tls
    assert vm2.tls_port == 5901
    assert vm2.port is None
    assert vm2.connect_port == 5901
    assert vm2.tls_verify


def test_defaults() -> None:
    config = TransportConfig()
    assert config.keepalive_interval == 5
    assert config.keepalive_count == 5
    assert config.connect_timeout == 10.0
    assert config.max_concurrent_ops_per_host == 8
    assert config.hosts == ()
    assert config.spice.vms == ()
    assert _load("") == config
    assert _load("transport: {}\n") == config
    assert _load("transport:\n") == config
    assert _load("transport:\n  hosts:\n  spice:\n    vms:\n  reconnect:\n") == config


def test_pool_settings_are_read() -> None:
    config = _load(
        """
        transport:
          keepalive_interval: 0
          keepalive_count: 3
          connect_timeout: 2.5
          max_concurrent_ops_per_host: 32
          reconnect: {initial_delay: 1, max_delay: 8, multiplier: 2, jitter: 0, max_attempts: 5}
        """
    )
    assert config.keepalive_interval == 0
    assert config.connect_timeout == 2.5
    assert config.max_concurrent_ops_per_host == 32
    assert config.reconnect.max_attempts == 5
    assert [config.reconnect.delay(n) for n in range(6)] == [1, 2, 4, 8, 8, 8]


def test_backoff_delays() -> None:
    backoff = ReconnectBackoff()
    assert backoff.delay(0) == 0.5
    assert backoff.delay(-3) == 0.5
    assert backoff.delay(1) == 1.0
    assert backoff.delay(100) == 30.0


def test_lookups_raise_key_error_for_unknown_ids() -> None:
    config = load_transport_config(SEED_6_1)
    with pytest.raises(KeyError):
        config.host("nope")
    with pytest.raises(KeyError):
        config.spice_vm("nope")


# --- HostInfo ---------------------------------------------------------------------------


def test_host_info_new_defaults_to_ssh_and_with_uri_replaces_it() -> None:
    info = HostInfo.new("host1", "192.168.1.10")
    assert str(info.uri) == "qemu+ssh://192.168.1.10/system"
    tcp = info.with_uri("qemu+tcp://192.168.1.10/system")
    assert tcp.uri == LibvirtUri.parse("qemu+tcp://192.168.1.10/system")
    assert tcp.host == "192.168.1.10"
    assert tcp.id == "host1"
    assert info.uri.transport is Transport.SSH  # the original is untouched
    local = tcp.with_uri(LibvirtUri.parse("qemu:///system"))
    assert local.host is None
    moved = tcp.with_uri("qemu+ssh://root@other.example/system")
    assert moved.host == "other.example"


def test_host_info_ipv6_host_gets_a_bracketed_default_uri() -> None:
    info = HostInfo.new("v6", "FD00::1", tags=["lab"])
    assert str(info.uri) == "qemu+ssh://[fd00::1]/system"
    assert info.host == "fd00::1"
    assert info.with_tags("a", "b").tags == ("a", "b")


def test_host_info_errors_are_config_errors() -> None:
    with pytest.raises(TransportConfigError, match="host 'h': uri: is required"):
        HostInfo.new("h")
    with pytest.raises(TransportConfigError, match="host 'h': uri: invalid libvirt URI"):
        HostInfo.new("h", "1.2.3.4").with_uri("qemu+tcp:///system")
    with pytest.raises(TransportConfigError, match=r"tags\[1\]: tag 'a' is given twice"):
        HostInfo.new("h", "1.2.3.4").with_tags("a", "a")


def test_host_info_is_frozen_and_hashable_uri() -> None:
    info = HostInfo.new("h", "example.org")
    with pytest.raises(ValueError, match="frozen"):
        info.id = "x"
    assert info.model_dump(mode="json")["uri"] == "qemu+ssh://example.org/system"


# --- Spice VMs --------------------------------------------------------------------------


def test_channel_names_are_case_insensitive_and_map_to_wire_types() -> None:
    config = _load(
        """
        transport:
          spice:
            vms:
              - {vm_id: a, server_addr: h, port: 1, channels: [main, usb_redir, smart-card, WebDav]}
        """
    )
    assert config.spice.vms[0].channels == (
        SpiceChannelType.MAIN,
        SpiceChannelType.USB_REDIR,
        SpiceChannelType.SMART_CARD,
        SpiceChannelType.WEB_DAV,
    )
    assert {c.wire for c in SpiceChannelType} == set(ChannelType) - {ChannelType.TUNNEL}
    assert SpiceChannelType.USB_REDIR.wire is ChannelType.USBREDIR


def test_spice_tls_forms() -> None:
    both = SpiceVmConfig(vm_id="a", server_addr="h", port=5900, tls_port=5901)
    assert not both.uses_tls
    assert both.connect_port == 5900
    forced = SpiceVmConfig(vm_id="a", server_addr="h", port=5900, tls_port=5901, tls=True)
    assert forced.connect_port == 5901
    tls_only = SpiceVmConfig(
        vm_id="a", server_addr="h", tls_port=5901, tls_ca_file=Path("/ca.pem"), tls_verify=False
    )
    assert tls_only.uses_tls
    assert tls_only.connect_port == 5901
    assert SpiceVmConfig(vm_id="a", server_addr="[::1]", port=1).server_addr == "::1"


def test_password_file_is_read_lazily(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "t.yaml").write_text(
        "transport:\n  spice:\n    vms:\n"
        "      - {vm_id: a, server_addr: h, port: 1, password_file: pw}\n"
        "      - {vm_id: b, server_addr: h, port: 1, password_file: missing}\n"
        "      - {vm_id: c, server_addr: h, port: 1, password_file: long}\n"
        "      - {vm_id: d, server_addr: h, port: 1}\n"
    )
    (tmp_path / "long").write_text("x" * 61)
    config = load_transport_config(tmp_path / "t.yaml")
    assert config.spice_vm("a").resolve_password() == "s3cret"
    assert config.spice_vm("d").resolve_password() is None
    with pytest.raises(VMControlConfigError, match=r"spice vm 'b': password_file .* cannot be"):
        config.spice_vm("b").resolve_password()
    with pytest.raises(VMControlConfigError, match="longer than the 60 bytes"):
        config.spice_vm("c").resolve_password()


def test_passwords_never_appear_in_repr_str_or_dumps() -> None:
    config = load_transport_config(SEED_6_1)
    vm1 = config.spice_vm("vm1")
    for text in (repr(config), str(config), repr(vm1), str(vm1), vm1.model_dump_json()):
        assert "optional_password" not in text
    assert "optional_password" not in str(vm1.model_dump(mode="json"))


def test_password_is_not_echoed_in_errors() -> None:
    message = _problem(
        """
        transport:
          spice:
            vms:
              - {vm_id: a, server_addr: h, port: 1, password: [hunter2]}
        """
    )
    assert "spice.vms[0].password" in message
    assert "hunter2" not in message


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system'}\n"
            "    - {id: b, uri: 'qemu:///session'}\n    - {id: c, uri: 'qemu+tcp:///system'}\n",
            "transport.hosts[2].uri: invalid libvirt URI 'qemu+tcp:///system': host: the tcp "
            "transport needs a host",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system'}\n"
            "    - {id: a, uri: 'qemu:///session'}\n",
            "transport.hosts[1].id: duplicate host id 'a' (first at hosts[0])",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system', colour: red}\n",
            "transport.hosts[0].colour: unknown key; known keys: id, uri, host, tags, "
            "max_concurrent_ops",
        ),
        (
            "transport:\n  keepalive: 5\n",
            "transport.keepalive: unknown key; known keys: keepalive_interval",
        ),
        ("hosts: []\n", "hosts: unknown key; known keys: transport"),
        (
            "transport:\n  reconnect: {delay: 1}\n",
            "transport.reconnect.delay: unknown key; known keys: initial_delay",
        ),
        (
            "transport:\n  spice:\n    vms:\n"
            "      - {vm_id: a, server_addr: h, port: 1, tls_cert: x}\n",
            "transport.spice.vms[0].tls_cert: unknown key; known keys: vm_id, server_addr",
        ),
        (
            "transport:\n  spice: {hosts: []}\n",
            "transport.spice.hosts: unknown key; known keys: vms",
        ),
        ("transport:\n  hosts:\n    - {id: a}\n", "transport.hosts[0].uri: is required"),
        (
            "transport:\n  hosts:\n    - {uri: 'qemu:///system'}\n",
            "transport.hosts[0].id: is required",
        ),
        (
            "transport:\n  hosts:\n    - {id: 'a b', uri: 'qemu:///system'}\n",
            "transport.hosts[0].id: 'a b' is not a valid host id",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, host: 'bad_host'}\n",
            "transport.hosts[0].host: 'bad_host' is not a valid host name",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, host: 10.0.0.1, uri: 'qemu+ssh://10.0.0.2/system'}\n",
            "transport.hosts[0].host: '10.0.0.1' differs from the URI's host '10.0.0.2'",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, host: 10.0.0.1, uri: 'qemu:///system'}\n",
            "transport.hosts[0].host: '10.0.0.1' is given but the URI 'qemu:///system' is local",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system', tags: [x, 'y z']}\n",
            "transport.hosts[0].tags[1]: 'y z' is not a valid tag",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system', tags: [x, x]}\n",
            "transport.hosts[0].tags[1]: tag 'x' is given twice",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 'qemu:///system', max_concurrent_ops: 0}\n",
            "transport.hosts[0].max_concurrent_ops: Input should be greater than or equal to 1",
        ),
        (
            "transport:\n  hosts:\n    - {id: a, uri: 5}\n",
            "transport.hosts[0].uri: expected a libvirt URI string, got int",
        ),
        (
            "transport:\n  hosts: {id: a}\n",
            "transport.hosts: Input should be a valid tuple",
        ),
        ("transport:\n  keepalive_interval: -1\n", "transport.keepalive_interval: Input should be"),
        ("transport:\n  keepalive_count: 101\n", "transport.keepalive_count: Input should be"),
        (
            "transport:\n  connect_timeout: 0\n",
            "transport.connect_timeout: Input should be greater",
        ),
        (
            "transport:\n  max_concurrent_ops_per_host: many\n",
            "transport.max_concurrent_ops_per_host: Input should be a valid integer",
        ),
        (
            "transport:\n  reconnect: {initial_delay: 5, max_delay: 1}\n",
            "transport.reconnect.max_delay: 1.0 is below initial_delay (5.0)",
        ),
        ("transport:\n  reconnect: {multiplier: 0.5}\n", "transport.reconnect.multiplier: Input"),
        ("transport:\n  reconnect: {jitter: 2}\n", "transport.reconnect.jitter: Input should be"),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1}\n"
            "      - {vm_id: a, server_addr: h, port: 2}\n",
            "transport.spice.vms[1].vm_id: duplicate vm id 'a' (first at vms[0])",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h}\n",
            "transport.spice.vms[0].port: give port (plain) or tls_port (TLS), or both",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 70000}\n",
            "transport.spice.vms[0].port: Input should be less than or equal to 65535",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: 'no such', port: 1}\n",
            "transport.spice.vms[0].server_addr: 'no such' is not a valid host name",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " channels: [Display]}\n",
            "transport.spice.vms[0].channels: must include Main",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " channels: [Main, Video]}\n",
            "transport.spice.vms[0].channels[1]: 'Video' is not a Spice channel type; use one "
            "of Main, Display",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " channels: [Main, Main]}\n",
            "transport.spice.vms[0].channels[1]: Main is listed twice",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " password: x, password_file: /p}\n",
            "transport.spice.vms[0].password_file: give password or password_file, not both",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            f" password: {'x' * 61}}}\n",
            "transport.spice.vms[0].password: is longer than the 60 bytes",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, tls_port: 1,"
            " tls: false}\n",
            "transport.spice.vms[0].tls: is false but only a tls_port is given",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " tls_ca_file: /ca.pem}\n",
            "transport.spice.vms[0].tls_ca_file: applies to TLS only; give tls_port",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " tls_verify: false}\n",
            "transport.spice.vms[0].tls_verify: applies to TLS only",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: a, server_addr: h, port: 1,"
            " tls_host_subject: 'CN=x'}\n",
            "transport.spice.vms[0].tls_host_subject: applies to TLS only",
        ),
        (
            "transport:\n  spice:\n    vms:\n      - {vm_id: '', server_addr: h, port: 1}\n",
            "transport.spice.vms[0].vm_id: '' is not a valid vm id",
        ),
        ("transport: [1, 2]\n", "transport: Input should be a valid dictionary"),
    ],
)
def test_errors_name_the_field_path(body: str, expected: str) -> None:
    message = _problem(body)
    assert message.startswith("<transport config>: ")
    assert expected in message
    assert "\n" not in message


def test_several_problems_are_listed_one_per_line() -> None:
    with pytest.raises(TransportConfigError) as info:
        _load(
            """
            transport:
              keepalive_count: -1
              hosts:
                - {id: a, uri: 'qemu+ssh:///system'}
            """
        )
    err = info.value
    assert [path for path, _ in err.problems] == [
        "transport.keepalive_count",
        "transport.hosts[0].uri",
    ]
    lines = str(err).splitlines()
    assert lines[0] == "<transport config>: 2 problems:"
    assert lines[1].startswith("  transport.keepalive_count: ")
    assert lines[2].startswith("  transport.hosts[0].uri: invalid libvirt URI")
    assert isinstance(err, VMControlConfigError)
    assert isinstance(err, InvalidInput)


def test_yaml_syntax_errors_give_the_position() -> None:
    with pytest.raises(
        VMControlConfigError, match=r"not valid YAML \(line \d+, column \d+\): expected ','"
    ):
        _load("transport:\n  hosts:\n    - {id: a\n")


def test_yaml_that_is_not_a_mapping() -> None:
    with pytest.raises(VMControlConfigError, match="expected a mapping with a 'transport:' key"):
        _load("- a\n- b\n")


def test_safe_load_refuses_python_tags() -> None:
    with pytest.raises(VMControlConfigError, match="not valid YAML"):
        _load("transport: !!python/object/apply:os.system ['true']\n")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(VMControlConfigError, match=re.escape(f"{missing}: cannot read")):
        load_transport_config(missing)
    with pytest.raises(VMControlConfigError, match=r"nope\.yaml: cannot read"):
        load_transport_config(str(missing))


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("transport:\n  hosts:\n    - {id: a, uri: 'qemu:///systen'}\n")
    with pytest.raises(TransportConfigError) as info:
        load_transport_config(path)
    assert str(info.value).startswith(f"{path}: transport.hosts[0].uri: invalid libvirt URI")
    assert "path: '/systen' is not a qemu daemon" in str(info.value)
