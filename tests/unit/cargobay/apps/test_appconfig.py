"""cargobay.apps.appconfig: tomlkit edits keep comments and order; bad input changes nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cargobay.apps.appconfig import TomlConfig, atomic_write
from cargobay.errors import AppConfigError, TomlSyntaxError

BOT = """\
[inner]
version = "6.3.2"

# 机器人身份
[bot]
platform = "qq"
qq_account = 114514 # 麦麦的QQ号
nickname = "麦麦"
alias_names = ["麦叠", "牢麦"] # 别名

[message]
max_context_size = 15 # 上文数量
"""

MODEL = """\
[inner]
version = "1.7.4"

[[api_providers]] # API服务提供商
name = "DeepSeek"                       # 名称
base_url = "https://api.deepseek.com/v1" # BaseURL
api_key = "your-api-key-here"
client_type = "openai"
max_retry = 2

[[models]]
model_identifier = "deepseek-chat"
name = "deepseek-v3"
api_provider = "DeepSeek"
price_in = 2.0

[model_task_config.utils] # 必须的模型
model_list = ["deepseek-v3"]
temperature = 0.2
"""


@pytest.fixture
def bot_file(tmp_path: Path) -> Path:
    path = tmp_path / "bot_config.toml"
    path.write_text(BOT, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_get_set_keeps_comments_order_and_mode(bot_file: Path) -> None:
    doc = TomlConfig.load(bot_file)
    assert doc.kind == "bot"
    assert doc.get("bot.nickname") == "麦麦"
    assert doc.get("bot.alias_names") == ["麦叠", "牢麦"]
    assert doc.get("bot.alias_names.1") == "牢麦"
    doc.set("bot.nickname", "小麦")
    doc.set("message.max_context_size", 30)
    doc.save()
    text = bot_file.read_text(encoding="utf-8")
    assert text == BOT.replace('"麦麦"', '"小麦"').replace("= 15 #", "= 30 #")
    assert stat.S_IMODE(bot_file.stat().st_mode) == 0o640
    assert not [p for p in bot_file.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("bot.qq_account", "not a number", "must be an integer"),
        ("bot.qq_account", True, "must be an integer"),
        ("message.max_context_size", 0, "between 1 and 1000"),
        ("bot.alias_names", ["ok", 3], "item 1 must be a string"),
        ("bot.nickname", "", "must match"),
    ],
)
def test_known_keys_are_type_checked(bot_file: Path, key: str, value: object, message: str) -> None:
    doc = TomlConfig.load(bot_file)
    with pytest.raises(AppConfigError, match=message):
        doc.set(key, value)
    assert doc.dumps() == BOT


def test_unknown_keys_need_an_existing_table_or_create(bot_file: Path) -> None:
    doc = TomlConfig.load(bot_file)
    doc.set("message.new_option", True)  # MaiBot grows options: allowed on an existing table
    with pytest.raises(AppConfigError, match="no voice"):
        doc.set("voice.enable", True)
    doc.set("voice.enable", True, create=True)
    assert doc.get("voice") == {"enable": True}
    doc.delete("message.new_option")
    assert not doc.has("message.new_option")
    with pytest.raises(AppConfigError, match=r"no bot\.missing"):
        doc.get("bot.missing")
    with pytest.raises(AppConfigError, match="bad key"):
        doc.get("bot..nickname")


def test_syntax_error_names_file_line_column_and_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bot_config.toml"
    broken = BOT.replace('nickname = "麦麦"', 'nickname = "麦麦')
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(TomlSyntaxError) as info:
        TomlConfig.load(path)
    assert info.value.file == str(path)
    assert info.value.line == 8
    assert info.value.column > 0
    assert str(info.value).startswith(f"{path}:8:")
    assert path.read_text(encoding="utf-8") == broken


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AppConfigError, match="no such config file"):
        TomlConfig.load(tmp_path / "model_config.toml")


def test_model_config_arrays_of_tables_validate(tmp_path: Path) -> None:
    path = tmp_path / "model_config.toml"
    path.write_text(
        MODEL.replace('client_type = "openai"', 'client_type = "grpc"').replace(
            "temperature = 0.2", "temperature = 7"
        ),
        encoding="utf-8",
    )
    doc = TomlConfig.load(path)
    assert doc.kind == "model"
    assert doc.validate() == [
        "api_providers.0.client_type: must be one of openai, gemini",
        "model_task_config.utils.temperature: must be between 0 and 2",
    ]
    with pytest.raises(AppConfigError, match="base_url must match"):
        doc.set("api_providers.0.base_url", "ftp://x")
    doc.set("api_providers.0.client_type", "gemini")
    doc.set("model_task_config.utils.temperature", 0.5)
    assert doc.validate() == []
    doc.append_table("models", {"model_identifier": "qwen", "name": "q", "api_provider": "X"})
    assert [m["name"] for m in doc.get("models")] == ["deepseek-v3", "q"]
    assert "# API服务提供商" in doc.dumps()


def test_adapter_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[napcat_server]\nhost = "0.0.0.0"\nport = 8095 # ws\n', encoding="utf-8")
    doc = TomlConfig.load(path)
    assert doc.kind == "adapter"
    with pytest.raises(AppConfigError, match="between 1 and 65535"):
        doc.set("napcat_server.port", 70000)
    doc.set("napcat_server.port", 3001)
    doc.save()
    assert (
        path.read_text(encoding="utf-8") == '[napcat_server]\nhost = "0.0.0.0"\nport = 3001 # ws\n'
    )


def test_atomic_write_modes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    atomic_write(path, b"one", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(AppConfigError, match="unknown config kind 'napcat'"):
        TomlConfig.parse("", path=tmp_path / "x.toml", kind="napcat")  # type: ignore[arg-type]
