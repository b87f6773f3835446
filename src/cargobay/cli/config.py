"""``config``: the settings of one machine, and the global ``config.yaml``.

    aiva config NAME list | get KEY | set KEY VALUE        (seed 004's ``Config`` verb)
    cargobay vm config NAME list | get KEY | set KEY VALUE
    cargobay config list | get KEY | set KEY VALUE | path

A machine's settings go through the daemon (``PATCH /v1/machines/{name}/config``), which
checks every value before applying any and says which changes wait for a restart.  The
global file is the user's own (like ``git config``): read and written here, validated as
a whole before it is replaced atomically; the daemon reads it on every create.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from cargobay.cli.app import EXIT_CODES_HELP, fail, new_app
from cargobay.cli.output import Format, emit_document, note, pick_format, print_pairs
from cargobay.cli.session import connect, current_paths
from cargobay.config import get_key, load_config, save_config, set_key, settings_items

__all__ = ["app", "machine_config"]

app = new_app("config", "The global configuration, config.yaml (defaults for new machines, ...).")


class Action(StrEnum):
    LIST = "list"
    GET = "get"
    SET = "set"


FormatOpt = Annotated[
    Format | None, typer.Option("--format", "-f", help="Output format (default table).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
KeyArg = Annotated[str | None, typer.Argument(help="Setting name (get, set).", show_default=False)]
ValueArg = Annotated[str | None, typer.Argument(help="New value (set).", show_default=False)]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _show(doc: dict[str, Any], pairs: list[tuple[str, Any]], out: Format) -> None:
    if out is Format.TABLE:
        print_pairs([(k, _text(v)) for k, v in pairs])
    else:
        emit_document(doc, out)


def _need(key: str | None, value: str | None, action: Action) -> tuple[str, str | None]:
    if key is None:
        fail(f"`config ... {action.value}` needs a KEY", 2)
    if action is Action.SET and value is None:
        fail(f"`config ... set {key}` needs a VALUE", 2)
    if action is not Action.SET and value is not None:
        fail(f"`config ... {action.value}` takes only a KEY", 2)
    return key, value


def machine_config(
    name: Annotated[str, typer.Argument(help="Machine name.", show_default=False)],
    action: Annotated[Action, typer.Argument(help="list, get KEY or set KEY VALUE.")] = Action.LIST,
    key: KeyArg = None,
    value: ValueArg = None,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Show or change a machine's settings: cpus, memory, disk (grow only), ports, env.

    Lists are comma-separated: `set ports 8080:80,5353:53/udp`, `set env A=1,B=2`;
    an empty value clears them."""
    out = pick_format(fmt, json_flag)
    client = connect()
    if action is Action.LIST:
        if key is not None:
            fail("`config NAME list` takes no KEY", 2)
        doc = client.machine_config(name)
        _show(doc, list(doc.get("settings", {}).items()), out)
        return
    key, value = _need(key, value, action)
    if action is Action.GET:
        settings = client.machine_config(name).get("settings", {})
        if key not in settings:
            fail(f"{key}: unknown setting; the settings are: {', '.join(settings)}", 2)
        if out is Format.TABLE:
            print(_text(settings[key]))
        else:
            emit_document({key: settings[key]}, out)
        return
    doc = client.set_machine_config(name, {key: value})
    if out is not Format.TABLE:
        emit_document(doc, out)
    changed = doc.get("changed") or []
    note(
        f"{name}: {key} = {_text(doc.get('settings', {}).get(key))}"
        if changed
        else f"{name}: {key} unchanged"
    )
    if doc.get("restart_required"):
        note(
            f"note: {', '.join(doc['restart_required'])} take(s) effect when {name} is "
            f"restarted (stop it and start it again)"
        )


# -- the global file ----------------------------------------------------------------------


@app.command("list", epilog=EXIT_CODES_HELP)
def list_(fmt: FormatOpt = None, json_flag: JsonOpt = False) -> None:
    """Every setting of config.yaml (defaults included)."""
    out = pick_format(fmt, json_flag)
    config = load_config(current_paths().config_file)
    _show(config.model_dump(mode="json"), list(settings_items(config)), out)


@app.command("get", epilog=EXIT_CODES_HELP)
def get(
    key: Annotated[str, typer.Argument(help="Dotted key, like defaults.memory.")],
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """One setting (or a section) of config.yaml."""
    out = pick_format(fmt, json_flag)
    value = get_key(load_config(current_paths().config_file), key)
    if out is not Format.TABLE:
        emit_document({key: value}, out)
    elif isinstance(value, dict):
        print_pairs([(k, _text(v)) for k, v in value.items()])
    else:
        print(_text(value))


@app.command("set", epilog=EXIT_CODES_HELP)
def set_(
    key: Annotated[str, typer.Argument(help="Dotted key, like defaults.memory.")],
    value: Annotated[str, typer.Argument(help="The value (YAML: 4, 1GB, [a, b], true).")],
) -> None:
    """Change one setting; the file is checked whole and replaced atomically."""
    path = current_paths().config_file
    config = set_key(load_config(path), key, value)
    save_config(path, config)
    note(f"{key} = {json.dumps(get_key(config, key))} ({path})")


@app.command("path", epilog=EXIT_CODES_HELP)
def path() -> None:
    """Where config.yaml is (it need not exist: then every default applies)."""
    print(current_paths().config_file)
