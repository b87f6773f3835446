"""The daemon's OpenAPI document, generated from the app and checked into the repository.

    python -m cargobay.daemon.openapi            # rewrite docs/openapi.json
    python -m cargobay.daemon.openapi --check    # exit 1 if docs/openapi.json is stale

A unit test runs the check, so a change to the API that is not reflected in the checked-in
document fails the build (with the command above in its message).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

from cargobay.daemon.app import DaemonState, create_app
from cargobay.paths import Paths

__all__ = ["DEFAULT_OUTPUT", "REGENERATE", "render", "schema"]

DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
REGENERATE = "python -m cargobay.daemon.openapi"


def schema() -> dict[str, Any]:
    """The OpenAPI document of the app (no service behind it: only routes are read)."""
    paths = Paths.from_env({"CARGOBAY_HOME": "/nonexistent"})
    state = DaemonState(paths=paths, service=cast(Any, None), images=cast(Any, None))
    return create_app(state, recover=False).openapi()


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cargobay.daemon.openapi")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            current = args.output.read_text()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{args.output} is out of date; regenerate it with `{REGENERATE}`")
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
