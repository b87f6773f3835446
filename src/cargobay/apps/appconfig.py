"""Edit MaiBot's TOML configuration without losing the user's comments or key order.

Three files are edited: MaiBot's ``bot_config.toml`` and ``model_config.toml`` and the
NapCat adapter's ``config.toml``.  tomlkit keeps comments, order and formatting of whatever
is not changed.

API::

    doc = TomlConfig.load(path, kind="model")     # TomlSyntaxError names file:line:column
    doc.get("api_providers.0.base_url")           # dotted key; integers index arrays
    doc.set("bot.nickname", "麦麦")               # checked against KNOWN_KEYS[kind]
    doc.delete("bot.alias_names")
    problems = doc.validate()                     # every known key of a wrong type/value
    doc.save()                                    # atomic (temp file + rename), mode kept
    text = doc.dumps()

Known keys (``KNOWN_KEYS``) are typed: setting one to a wrong type or an out-of-range value is
an :class:`~cargobay.errors.AppConfigError` and changes nothing.  Keys the table does not list
may be set on existing tables (MaiBot grows new options often); a new table is created only
with ``create=True``.  A file that does not parse is never written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from cargobay.errors import AppConfigError, TomlSyntaxError

ConfigKind = Literal["bot", "model", "adapter"]
Check = Callable[[Any], str | None]
"""A value check: None when the value is fine, else what is wrong with it."""


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"must be between {lo} and {hi}"
        return None

    return check


def _num(lo: float | None = None, hi: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "must be a number"
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"must be between {lo} and {hi}"
        return None

    return check


def _str(choices: tuple[str, ...] = (), pattern: str = "") -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if choices and value not in choices:
            return f"must be one of {', '.join(choices)}"
        if pattern and not re.match(pattern, value):
            return f"must match {pattern}"
        return None

    return check


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _list(of: Check) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return "must be a list"
        for i, item in enumerate(value):
            if (problem := of(item)) is not None:
                return f"item {i} {problem}"
        return None

    return check


_URL = r"^https?://[^\s]+$"
_PORT = _int(1, 65535)

KNOWN_KEYS: dict[ConfigKind, dict[str, Check]] = {
    "bot": {
        "inner.version": _str(),
        "bot.qq": _int(1),
        "bot.qq_account": _int(1),
        "bot.platform": _str(),
        "bot.nickname": _str(pattern=r"^.+$"),
        "bot.alias_names": _list(_str()),
        "personality.personality_core": _str(),
        "message.max_context_size": _int(1, 1000),
        "emoji.emoji_chance": _num(0, 1),
        "chinese_typo.enable": _bool,
        "keywords_reaction.enable": _bool,
        "experimental.enable_friend_chat": _bool,
    },
    "model": {
        "inner.version": _str(),
        "api_providers.*.name": _str(pattern=r"^\S.*$"),
        "api_providers.*.base_url": _str(pattern=_URL),
        "api_providers.*.api_key": _str(),
        "api_providers.*.client_type": _str(("openai", "gemini")),
        "api_providers.*.max_retry": _int(0, 100),
        "api_providers.*.timeout": _int(1, 3600),
        "api_providers.*.retry_interval": _int(0, 3600),
        "models.*.model_identifier": _str(pattern=r"^\S+$"),
        "models.*.name": _str(pattern=r"^\S.*$"),
        "models.*.api_provider": _str(),
        "models.*.price_in": _num(0),
        "models.*.price_out": _num(0),
        "models.*.force_stream_mode": _bool,
        "model_task_config.*.model_list": _list(_str()),
        "model_task_config.*.temperature": _num(0, 2),
        "model_task_config.*.max_tokens": _int(1),
    },
    "adapter": {
        "napcat_server.host": _str(),
        "napcat_server.port": _PORT,
        "napcat_server.heartbeat_interval": _int(1),
        "maibot_server.host": _str(),
        "maibot_server.port": _PORT,
        "chat.group_list_type": _str(("whitelist", "blacklist")),
        "chat.group_list": _list(_int(1)),
        "chat.private_list_type": _str(("whitelist", "blacklist")),
        "chat.private_list": _list(_int(1)),
        "debug.level": _str(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
}

FILE_KINDS: dict[str, ConfigKind] = {
    "bot_config.toml": "bot",
    "model_config.toml": "model",
    "config.toml": "adapter",
}


def _split(key: str) -> list[str | int]:
    if not key or any(not part for part in key.split(".")):
        raise AppConfigError(f"bad key {key!r}: use dotted names like bot.nickname")
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def _rule(kind: ConfigKind | None, parts: list[str | int]) -> Check | None:
    """The check of a known key; ``*`` in a known key stands for any one component
    (an array index or a table name such as model_task_config.<task>)."""
    if kind is None:
        return None
    names = [str(p) for p in parts]
    for known, check in KNOWN_KEYS[kind].items():
        pattern = known.split(".")
        if len(pattern) == len(names) and all(
            k in ("*", n) for k, n in zip(pattern, names, strict=True)
        ):
            return check
    return None


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


@dataclass
class TomlConfig:
    """One TOML file, parsed with tomlkit; edits keep everything else as it was."""

    path: Path
    kind: ConfigKind | None
    doc: TOMLDocument = field(repr=False)

    @classmethod
    def parse(cls, text: str, *, path: Path, kind: ConfigKind | None = None) -> TomlConfig:
        if kind is not None and kind not in KNOWN_KEYS:
            raise AppConfigError(f"unknown config kind {kind!r}; one of {', '.join(KNOWN_KEYS)}")
        try:
            doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as err:
            raise TomlSyntaxError(
                str(err).split(" at line ")[0], file=str(path), line=err.line, column=err.col
            ) from err
        return cls(path=path, kind=kind, doc=doc)

    @classmethod
    def load(cls, path: Path, *, kind: ConfigKind | None = None) -> TomlConfig:
        """Parse ``path``; ``kind`` defaults from the file name (bot_config.toml → "bot")."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise AppConfigError(f"{path}: no such config file") from err
        except (OSError, UnicodeDecodeError) as err:
            raise AppConfigError(f"{path}: cannot read: {err}") from err
        return cls.parse(text, path=path, kind=kind or FILE_KINDS.get(path.name))

    # --- access ---------------------------------------------------------------------

    def _walk(self, parts: list[str | int], *, create: bool = False) -> Any:
        node: Any = self.doc
        for depth, part in enumerate(parts):
            where = ".".join(str(p) for p in parts[: depth + 1])
            if isinstance(part, int):
                if not isinstance(node, list | AoT) or part >= len(node):
                    raise AppConfigError(f"{self.path}: no {where}")
                node = node[part]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            elif create and isinstance(node, dict):
                node[part] = tomlkit.table()
                node = node[part]
            else:
                raise AppConfigError(f"{self.path}: no {where}")
        return node

    def get(self, key: str) -> Any:
        """The value at ``key`` as plain Python (dicts, lists, str, int, ...)."""
        return _plain(self._walk(_split(key)))

    def has(self, key: str) -> bool:
        try:
            self._walk(_split(key))
        except AppConfigError:
            return False
        return True

    def check(self, key: str, value: Any) -> None:
        """Raise AppConfigError if ``key`` is known and ``value`` does not fit it."""
        rule = _rule(self.kind, _split(key))
        if rule is not None and (problem := rule(value)) is not None:
            raise AppConfigError(f"{self.path}: {key} {problem} (got {value!r})")

    def set(self, key: str, value: Any, *, create: bool = False) -> None:
        """Set ``key``; its parent table must exist unless ``create``."""
        parts = _split(key)
        self.check(key, value)
        parent = self._walk(parts[:-1], create=create)
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(parent, list) or last >= len(parent):
                raise AppConfigError(f"{self.path}: no {key}")
            parent[last] = value
        elif isinstance(parent, dict):
            parent[last] = value
        else:
            raise AppConfigError(f"{self.path}: {key} is inside a value, not a table")

    def delete(self, key: str) -> None:
        parts = _split(key)
        parent = self._walk(parts[:-1])
        last = parts[-1]
        try:
            del parent[last]
        except (KeyError, IndexError, TypeError) as err:
            raise AppConfigError(f"{self.path}: no {key}") from err

    def validate(self) -> list[str]:
        """Every known key present with a wrong type or value, as 'key: problem' lines."""
        if self.kind is None:
            return []
        problems: list[str] = []

        def visit(node: Any, prefix: list[str | int]) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    visit(v, [*prefix, str(k)])
            elif isinstance(node, list | AoT) and node and all(isinstance(i, dict) for i in node):
                for i, item in enumerate(node):
                    visit(item, [*prefix, i])
            rule = _rule(self.kind, prefix) if prefix else None
            if rule is not None and (problem := rule(_plain(node))) is not None:
                problems.append(f"{'.'.join(str(p) for p in prefix)}: {problem}")

        visit(self.doc, [])
        return problems

    def tables(self, key: str) -> list[Table]:
        """The tables of an array of tables (``[[api_providers]]``), [] when absent."""
        if key not in self.doc:
            return []
        node = self.doc[key]
        if not isinstance(node, AoT):
            raise AppConfigError(f"{self.path}: {key} is not an array of tables")
        return list(node)

    def append_table(self, key: str, values: dict[str, Any]) -> None:
        """Append a ``[[key]]`` table (created when missing), each value checked first."""
        for name, value in values.items():
            self.check(f"{key}.0.{name}", value)
        table = tomlkit.table()
        for name, value in values.items():
            table[name] = value
        if key in self.doc:
            node = self.doc[key]
            if not isinstance(node, AoT):
                raise AppConfigError(f"{self.path}: {key} is not an array of tables")
            node.append(table)
        else:
            self.doc[key] = tomlkit.aot()
            self.doc[key].append(table)

    # --- writing --------------------------------------------------------------------

    def dumps(self) -> str:
        return tomlkit.dumps(self.doc)

    def save(self, *, mode: int | None = None) -> None:
        """Write atomically: a temp file in the same directory, fsync, rename.  The file
        keeps its permission bits unless ``mode`` is given (0o600 for files with secrets)."""
        text = self.dumps()
        self.parse(text, path=self.path)  # never write what would not parse back
        atomic_write(self.path, text.encode("utf-8"), mode=mode)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically; mode: given, else the old file's, else 0644."""
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
