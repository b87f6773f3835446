"""API providers of a MaiBot instance, their keys kept in a 0600 file and masked everywhere else.

MaiBot reads its providers (name, base_url, api_key, client_type, max_retry, ...) from the
``[[api_providers]]`` tables of ``model_config.toml``.  The launcher keeps the source of truth
in a secrets file (JSON, mode 0600, written atomically) and writes the providers into
``model_config.toml`` (then also 0600) when the instance is configured.

API::

    store = ProviderStore(instance_dir / "secrets.json")
    store.put(ApiProvider(name="DeepSeek", base_url="https://…/v1", api_key="sk-…"))
    store.providers() / store.get("DeepSeek") / store.remove("DeepSeek")
    store.public()                       # dicts with api_key masked: for every API answer
    apply_providers(TomlConfig.load(model_config), store.providers(), prune=False)  # edits + saves
    mask("sk-abcdef123456")              # 'sk-…3456'
    mask_text(log_line, store.secret_values())   # every known secret in a text masked
    logger.addFilter(MaskingFilter(store.secret_values))   # logs never carry a key
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from cargobay.apps.appconfig import TomlConfig, atomic_write
from cargobay.errors import AppConfigError, NotFound

SECRET_MODE = 0o600


def mask(value: str) -> str:
    """A recognisable but useless form of a secret: a short prefix and the last 4 chars
    for long values, only asterisks for short ones."""
    if len(value) < 12:
        return "*" * 8
    return f"{value[:3]}…{value[-4:]}"


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-trivial) secret replaced by its mask."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


class MaskingFilter(logging.Filter):
    """A logging filter that masks every current secret in each record's final message."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message, self._secrets())
        if masked != message:
            record.msg, record.args = masked, None
        return True


class ApiProvider(BaseModel):
    """One ``[[api_providers]]`` entry of MaiBot's model_config.toml."""

    name: str = Field(min_length=1, max_length=100)
    base_url: str
    api_key: SecretStr
    client_type: Literal["openai", "gemini"] = "openai"
    max_retry: int = Field(default=2, ge=0, le=100)
    timeout: int = Field(default=120, ge=1, le=3600)
    retry_interval: int = Field(default=10, ge=0, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with spaces")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http(s) URL")
        return value

    def toml_values(self) -> dict[str, Any]:
        """The provider as model_config.toml wants it (the key in clear: the file is 0600)."""
        data = self.model_dump()
        data["api_key"] = self.api_key.get_secret_value()
        return data

    def public(self) -> dict[str, Any]:
        """The provider for output and logs: the key masked."""
        data = self.model_dump()
        data["api_key"] = mask(self.api_key.get_secret_value())
        return data


def provider_from(data: dict[str, Any]) -> ApiProvider:
    """An ApiProvider from plain data, or AppConfigError naming the bad fields (no values)."""
    try:
        return ApiProvider.model_validate(data)
    except ValidationError as err:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise AppConfigError(f"invalid API provider: {fields}") from err


class ProviderStore:
    """The providers of one instance in a JSON file only its owner can read (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> list[ApiProvider]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, SECRET_MODE)  # repair: a copy or umask loosened it
        try:
            entries = json.loads(raw)["providers"]
        except (ValueError, KeyError, TypeError) as err:
            raise AppConfigError(f"{self.path}: not a provider store ({err})") from err
        return [provider_from(entry) for entry in entries]

    def _write(self, providers: list[ApiProvider]) -> None:
        data = {"providers": [p.toml_values() for p in providers]}
        atomic_write(self.path, json.dumps(data, indent=2).encode(), mode=SECRET_MODE)

    def providers(self) -> list[ApiProvider]:
        return self._read()

    def get(self, name: str) -> ApiProvider:
        for provider in self._read():
            if provider.name == name:
                return provider
        raise NotFound(f"no API provider named {name!r}")

    def put(self, provider: ApiProvider) -> None:
        """Add ``provider`` or replace the one with its name (order kept)."""
        providers = self._read()
        for i, old in enumerate(providers):
            if old.name == provider.name:
                providers[i] = provider
                break
        else:
            providers.append(provider)
        self._write(providers)

    def remove(self, name: str) -> None:
        providers = self._read()
        kept = [p for p in providers if p.name != name]
        if len(kept) == len(providers):
            raise NotFound(f"no API provider named {name!r}")
        self._write(kept)

    def public(self) -> list[dict[str, Any]]:
        return [p.public() for p in self._read()]

    def secret_values(self) -> list[str]:
        return [p.api_key.get_secret_value() for p in self._read()]


def apply_providers(
    config: TomlConfig, providers: Iterable[ApiProvider], *, prune: bool = False
) -> list[str]:
    """Write ``providers`` into ``config``'s ``[[api_providers]]``: a table with the same name
    is updated in place (its comments stay), a new one appended; with ``prune``, tables of
    providers not given are removed.  Saves the file with mode 0600; returns the names
    changed or added."""
    wanted = list(providers)
    tables = config.tables("api_providers")
    changed: list[str] = []
    for provider in wanted:
        values = provider.toml_values()
        table = next((t for t in tables if t.get("name") == provider.name), None)
        if table is None:
            config.append_table("api_providers", values)
            changed.append(provider.name)
            continue
        for key, value in values.items():
            if table.get(key) != value:
                table[key] = value
                if provider.name not in changed:
                    changed.append(provider.name)
    if prune and "api_providers" in config.doc:
        names = {p.name for p in wanted}
        aot = config.doc["api_providers"]
        for i in reversed(range(len(aot))):
            if aot[i].get("name") not in names:
                del aot[i]
    problems = [p for p in config.validate() if p.startswith("api_providers.")]
    if problems:
        raise AppConfigError(f"{config.path}: " + "; ".join(problems))
    config.save(mode=SECRET_MODE)
    return changed
