"""cargobay.apps.secrets: providers stored 0600, keys masked in every output and log."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from cargobay.apps.appconfig import TomlConfig
from cargobay.apps.secrets import (
    ApiProvider,
    MaskingFilter,
    ProviderStore,
    apply_providers,
    mask,
    mask_text,
    provider_from,
)
from cargobay.errors import AppConfigError, NotFound

KEY = "sk-0123456789abcdefSECRET"
MODEL = """\
[inner]
version = "1.7.4"

[[api_providers]] # 第一个服务商
name = "DeepSeek" # 名称
base_url = "https://api.deepseek.com/v1"
api_key = "your-api-key-here"
client_type = "openai"
max_retry = 2

[[api_providers]]
name = "Old"
base_url = "https://old.example/v1"
api_key = "old-key-0000000"
"""


def _provider(name: str = "DeepSeek", key: str = KEY, **extra: object) -> ApiProvider:
    return provider_from(
        {"name": name, "base_url": "https://api.deepseek.com/v1", "api_key": key, **extra}
    )


def test_mask() -> None:
    assert mask(KEY) == "sk-…CRET"
    assert mask("short") == "********"
    assert KEY not in mask_text(f"calling with {KEY} now", [KEY])
    assert mask_text("nothing here", [KEY, ""]) == "nothing here"


def test_store_is_0600_and_round_trips(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path / "secrets.json")
    assert store.providers() == []
    store.put(_provider())
    store.put(_provider("SiliconFlow", "sf-key-9999999999", client_type="openai", max_retry=5))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.providers()] == ["DeepSeek", "SiliconFlow"]
    assert store.get("SiliconFlow").max_retry == 5
    store.put(_provider(max_retry=7))
    assert [p.name for p in store.providers()] == ["DeepSeek", "SiliconFlow"]
    assert store.get("DeepSeek").max_retry == 7
    store.remove("SiliconFlow")
    with pytest.raises(NotFound):
        store.get("SiliconFlow")
    with pytest.raises(NotFound):
        store.remove("SiliconFlow")
    store.path.chmod(0o644)
    store.providers()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_key_never_in_public_output_repr_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ProviderStore(tmp_path / "secrets.json")
    provider = _provider()
    store.put(provider)
    assert KEY not in json.dumps(store.public())
    assert store.public()[0]["api_key"] == "sk-…CRET"
    assert KEY not in repr(provider)
    assert KEY not in provider.model_dump_json()
    logger = logging.getLogger("cargobay.test.secrets")
    logger.addFilter(MaskingFilter(store.secret_values))
    with caplog.at_level(logging.INFO, logger="cargobay.test.secrets"):
        logger.info("provider replied 401 for key %s", KEY)
    assert KEY not in caplog.text
    assert "sk-…CRET" in caplog.text


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "base_url": "https://x", "api_key": "k"}, "name"),
        ({"name": "x", "base_url": "file:///etc", "api_key": "k"}, "base_url"),
        (
            {"name": "x", "base_url": "https://x", "api_key": "k", "client_type": "grpc"},
            "client_type",
        ),
        ({"name": "x", "base_url": "https://x", "api_key": "k", "max_retry": -1}, "max_retry"),
        ({"name": "x", "base_url": "https://x"}, "api_key"),
    ],
)
def test_bad_provider(data: dict[str, object], field: str) -> None:
    with pytest.raises(AppConfigError, match=f"invalid API provider: {field}"):
        provider_from(data)


def test_broken_store_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{not json")
    with pytest.raises(AppConfigError, match="not a provider store"):
        ProviderStore(path).providers()


def test_apply_providers_updates_in_place_and_writes_0600(tmp_path: Path) -> None:
    path = tmp_path / "model_config.toml"
    path.write_text(MODEL, encoding="utf-8")
    config = TomlConfig.load(path)
    new = _provider("SiliconFlow", "sf-key-9999999999", client_type="openai")
    changed = apply_providers(config, [_provider(), new], prune=True)
    assert changed == ["DeepSeek", "SiliconFlow"]
    text = path.read_text(encoding="utf-8")
    assert "# 第一个服务商" in text
    assert 'name = "DeepSeek" # 名称' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reread = TomlConfig.load(path)
    assert [t["name"] for t in reread.get("api_providers")] == ["DeepSeek", "SiliconFlow"]
    assert reread.get("api_providers.0.api_key") == KEY
    assert reread.get("api_providers.1.timeout") == 120
    assert apply_providers(reread, [_provider(), new]) == []
