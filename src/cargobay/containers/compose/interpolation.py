"""Variable interpolation in Compose files, and ``.env`` files.

The Compose Specification's rules, which docker-compose 1.29 follows too:

- ``$VAR`` and ``${VAR}``: the value, or an empty string when unset (with a warning);
- ``${VAR:-default}``: ``default`` when VAR is unset *or empty*; ``${VAR-default}``: only
  when unset;
- ``${VAR:?message}``: an error when unset or empty; ``${VAR?message}``: when unset;
- ``$$``: a literal ``$``.

Interpolation applies to every string *value* of the file (never to keys), after YAML
parsing and before validation, so ``ports: ["${PORT:-8080}:80"]`` is validated as the
string it becomes.  Variable names are case-sensitive; the first character is a letter or
``_``.  Pure functions: the environment is a mapping passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "InterpolationError",
    "interpolate",
    "interpolate_tree",
    "parse_env_file",
    "read_env_file",
]

_PATTERN = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)
      | (?P<named>[_a-zA-Z][_a-zA-Z0-9]*)
      | \{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<sep>:?[-?])(?P<arg>[^}]*))?\}
      | (?P<invalid>)
    )
    """,
    re.VERBOSE,
)


class InterpolationError(ValueError):
    """A bad ``$`` expression, or a required variable that is missing.

    ``path`` is where it happened (``services.web.ports[0]``), filled in by
    ``interpolate_tree``."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def interpolate(
    text: str,
    env: Mapping[str, str],
    on_missing: Callable[[str], None] | None = None,
) -> str:
    """``text`` with every ``$`` expression replaced from ``env``.

    ``on_missing(name)`` is called for a plain ``$VAR``/``${VAR}`` that is unset (it
    becomes an empty string)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "$"
        named = match.group("named")
        if named is not None:
            return _plain(named, env, on_missing)
        braced = match.group("braced")
        if braced is None:
            rest = text[match.start() : match.start() + 20]
            raise InterpolationError(f"invalid interpolation format in {text!r} at {rest!r}")
        sep = match.group("sep")
        arg = match.group("arg") or ""
        if sep is None:
            return _plain(braced, env, on_missing)
        value = env.get(braced)
        if sep == ":-":
            return value if value else arg
        if sep == "-":
            return value if value is not None else arg
        if sep == ":?":
            if not value:
                raise InterpolationError(
                    f"required variable {braced} is missing a value: {arg or braced}"
                )
            return value
        # sep == "?"
        if value is None:
            raise InterpolationError(
                f"required variable {braced} is missing a value: {arg or braced}"
            )
        return value

    return _PATTERN.sub(replace, text)


def _plain(name: str, env: Mapping[str, str], on_missing: Callable[[str], None] | None) -> str:
    value = env.get(name)
    if value is None:
        if on_missing is not None:
            on_missing(name)
        return ""
    return value


def interpolate_tree(
    node: Any,
    env: Mapping[str, str],
    path: str = "",
    on_missing: Callable[[str], None] | None = None,
) -> Any:
    """A copy of a parsed YAML tree with every string value interpolated (keys are kept
    as written).  Errors carry the dotted path of the value."""
    if isinstance(node, str):
        try:
            return interpolate(node, env, on_missing)
        except InterpolationError as err:
            err.path = path
            raise
    if isinstance(node, Mapping):
        return {
            key: interpolate_tree(value, env, f"{path}.{key}" if path else str(key), on_missing)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            interpolate_tree(item, env, f"{path}[{index}]", on_missing)
            for index, item in enumerate(node)
        ]
    return node


# -- .env files ---------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*(=\s*(.*))?$")


def parse_env_file(
    text: str, env: Mapping[str, str] | None = None, *, source: str = ".env"
) -> dict[str, str | None]:
    """Parse ``KEY=VALUE`` lines the way python-dotenv (and so docker-compose) does.

    Blank lines and ``#`` comments are skipped; ``export`` is allowed; single-quoted
    values are literal; double-quoted values understand ``\\n``, ``\\t``, ``\\"`` and
    ``\\\\`` and may span lines; unquoted values end at `` #``.  ``${VAR}`` in unquoted and
    double-quoted values expands from the variables defined above it, then from ``env``.
    A bare ``KEY`` (no ``=``) maps to None."""
    result: dict[str, str | None] = {}
    lookup: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise InterpolationError(f"{source} line {index}: cannot parse {line.strip()!r}")
        key, has_value, raw = match.group(1), match.group(2), match.group(3)
        if has_value is None:
            result[key] = None
            continue
        raw = raw or ""
        if raw.startswith("'"):
            while raw.count("'") < 2 and index < len(lines):
                raw += "\n" + lines[index]
                index += 1
            end = raw.find("'", 1)
            if end < 0:
                raise InterpolationError(f"{source} line {index}: unterminated ' quote")
            value = raw[1:end]
        elif raw.startswith('"'):
            while _closing_quote(raw) < 0 and index < len(lines):
                raw += "\n" + lines[index]
                index += 1
            end = _closing_quote(raw)
            if end < 0:
                raise InterpolationError(f'{source} line {index}: unterminated " quote')
            value = _unescape(raw[1:end])
            value = _expand_dotenv(value, lookup, env)
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
            value = _expand_dotenv(value, lookup, env)
        result[key] = value
        lookup[key] = value
    return result


def _closing_quote(raw: str) -> int:
    position = 1
    while position < len(raw):
        char = raw[position]
        if char == "\\":
            position += 2
            continue
        if char == '"':
            return position
        position += 1
    return -1


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


_DOTENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_dotenv(value: str, defined: Mapping[str, str], env: Mapping[str, str] | None) -> str:
    """python-dotenv's expansion as docker-compose reads env files (``dotenv_values``):
    ``${VAR}`` and ``${VAR:-default}``, from the variables defined above in the file
    first, then from ``env``."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = defined.get(name)
        if found is None:
            found = (env or {}).get(name)
        return found if found else (default or "")

    return _DOTENV_VAR.sub(replace, value)


def read_env_file(path: Path, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Read and parse an env file; OSError propagates (the caller names the service)."""
    return parse_env_file(path.read_text(encoding="utf-8-sig"), env, source=str(path))
