"""config.yaml: parsing, strict validation with the key path in every error, get/set,
atomic save, and where the file lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.config import (
    Config,
    get_key,
    load_config,
    parse_config,
    save_config,
    set_key,
    settings_items,
)
from cargobay.errors import ConfigError
from cargobay.paths import Paths

SEED = """
version: "1.0"
defaults:
  cpus: 4
  memory: "8GB"
  disk: "50GB"
  cache_strategy: "writeback"
platform:
  linux:
    firecracker_binary: "/usr/bin/firecracker"
    jailer_binary: "/usr/bin/jailer"
  macos:
    lima_instance: "aiva-host"
    lima_cpus: 8
    lima_memory: "16GB"
  windows:
    wsl_distro: "aiva-wsl"
    nested_virtualization: true
networking:
  bridge_name: "mcp-br0"
  subnet: "172.16.0.0/24"
  dns_servers:
    - "8.8.8.8"
    - "1.1.1.1"
"""


def test_the_seeds_file_parses() -> None:
    c = parse_config(SEED)
    assert (c.defaults.cpus, c.defaults.memory_mb, c.defaults.disk_mb) == (4, 8192, 51200)
    assert c.platform.macos.lima_instance == "aiva-host"
    assert c.platform.windows.wsl_distro == "aiva-wsl"
    assert c.networking.bridge_name == "mcp-br0"
    assert str(c.networking.network) == "172.16.0.0/24"
    assert c.networking.dns_servers == ["8.8.8.8", "1.1.1.1"]


def test_missing_or_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.yaml") == Config()
    (tmp_path / "empty.yaml").write_text("")
    c = load_config(tmp_path / "empty.yaml")
    assert (c.defaults.cpus, c.defaults.memory_mb, c.defaults.disk_mb) == (1, 512, 2048)
    assert c.networking.bridge_name == "mcp-br0"


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("defaults:\n  memory: 8 parsecs\n", "defaults.memory: bad memory"),
        ("defaults:\n  memory: 32MB\n", "defaults.memory: memory '32MB' is too small"),
        ("defaults:\n  cpus: '4'\n", "defaults.cpus: "),  # strict: no guessing
        ("defaults:\n  cpus: 0\n", "defaults.cpus: "),
        ("defaults:\n  cache_strategy: fast\n", "defaults.cache_strategy: "),
        ("defaults:\n  colour: red\n", "defaults.colour: unknown key"),
        ("networking:\n  subnet: 172.16.0.1/24\n", "networking.subnet: bad subnet"),
        ("networking:\n  subnet: 10.0.0.0/30\n", "networking.subnet: subnet '10.0.0.0/30' is too"),
        ("networking:\n  bridge_name: a-very-long-bridge\n", "networking.bridge_name: bad bridge"),
        ("networking:\n  dns_servers: [8.8.8.8, dns.google]\n", "networking.dns_servers: bad DNS"),
        ("platform:\n  windows:\n    nested_virtualization: 'yes'\n", "platform.windows.nested"),
        ("version: '2.0'\n", "version: "),
    ],
)
def test_errors_name_the_key_path(text: str, prefix: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    assert str(info.value).startswith(prefix), str(info.value)
    assert str(info.value).endswith("in config.yaml")


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("defaults: [\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config("- 1\n- 2\n")


def test_get_set_and_items() -> None:
    c = set_key(Config(), "defaults.memory", "768MB")
    assert get_key(c, "defaults.memory") == "768MB"
    assert c.defaults.memory_mb == 768
    c = set_key(c, "defaults.cpus", "2")
    assert c.defaults.cpus == 2
    c = set_key(c, "networking.dns_servers", "[9.9.9.9]")
    assert c.networking.dns_servers == ["9.9.9.9"]
    c = set_key(c, "defaults.disk", "4096")  # a bare number for a size stays a size
    assert c.defaults.disk_mb == 4096
    assert get_key(c, "defaults")["cpus"] == 2
    items = dict(settings_items(c))
    assert items["networking.bridge_name"] == "mcp-br0"
    assert items["platform.macos.vm_type"] == "vz"


@pytest.mark.parametrize(
    ("key", "value", "prefix"),
    [
        ("defaults.memory", "lots", "defaults.memory: "),
        ("defaults.cpus", "four", "defaults.cpus: "),
        ("defaults.colour", "red", "defaults.colour: unknown key"),
        ("nope.memory", "1GB", "nope.memory: unknown key"),
        ("defaults", "1", "defaults: is a section"),
    ],
)
def test_set_refuses_with_the_key(key: str, value: str, prefix: str) -> None:
    with pytest.raises(ConfigError) as info:
        set_key(Config(), key, value)
    assert str(info.value).startswith(prefix), str(info.value)


def test_save_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.yaml"
    c = set_key(Config(), "networking.bridge_name", "br-test")
    save_config(path, c)
    assert load_config(path) == c
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary left


def test_config_path_follows_xdg_and_cargobay_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert Paths.from_env(env).config_file == tmp_path / "xdg" / "cargobay" / "config.yaml"
    env = {"HOME": str(tmp_path)}
    assert Paths.from_env(env).config_file == tmp_path / ".config" / "cargobay" / "config.yaml"
    env = {"CARGOBAY_HOME": str(tmp_path / "h")}
    assert Paths.from_env(env).config_file == tmp_path / "h" / "config" / "config.yaml"
