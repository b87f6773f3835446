"""``aiva``: seed 004's command line, the machine verbs at top level.

    aiva init NAME [--template minimal|standard|performance|mcp-server|agent|inference]
    aiva start NAME [--cpus N --memory 512MB --disk 2GB --ports 8080:80 ...]
    aiva stop NAME [--force]
    aiva status [NAME] [--format table|json|yaml]
    aiva exec NAME -- CMD...
    aiva logs NAME [--follow] [--tail N]
    aiva rm NAME
    aiva config NAME list | get KEY | set KEY VALUE
    aiva templates

The same verbs as ``cargobay vm`` (one implementation, ``cargobay.cli.machines``); the
templates are the seed's resource profiles scaled to this host (``templates``).
"""

from __future__ import annotations

from typing import Any

from cargobay.cli import machines as verbs
from cargobay.cli.app import new_app
from cargobay.cli.inputs import format_mib
from cargobay.cli.output import Format, emit_document, pick_format, print_table
from cargobay.cli.templates import (
    SEED_PROFILES,
    host_resources,
    scale_factor,
    scaled_profiles,
    shipped_templates,
)

__all__ = ["app", "main"]

app = new_app(
    "aiva",
    "Local microVMs for AI agents and MCP servers (seed 004's CLI on CargoBay). "
    "Commands talk to cargobayd, which is started when it is not running.",
)
verbs.register(app, aiva=True)


@app.command("templates")
def templates(fmt: verbs.FormatOpt = None, json_flag: verbs.JsonOpt = False) -> None:
    """List the resource templates for `aiva init --template`, scaled to this host."""
    out = pick_format(fmt, json_flag)
    host = host_resources()
    profiles = scaled_profiles(*host)
    seed = {p.name: p for p in SEED_PROFILES}
    if out is not Format.TABLE:
        doc: dict[str, Any] = {
            "host": {"cpus": host[0], "memory_mb": host[1]},
            "factor": round(scale_factor(*host), 4),
            "templates": [
                {
                    "name": p.name,
                    "cpus": p.cpus,
                    "memory_mb": p.memory_mib,
                    "disk_mb": p.disk_mib,
                    "purpose": p.purpose,
                }
                for p in profiles.values()
            ],
            "shipped": [
                {"name": t.name, **t.model_dump(exclude={"name"}, mode="json")}
                for t in shipped_templates().values()
            ],
        }
        emit_document(doc, out)
        return
    print_table(
        ["TEMPLATE", "CPUS", "MEMORY", "DISK", "SEED", "FOR"],
        [
            [
                p.name,
                str(p.cpus),
                format_mib(p.memory_mib),
                format_mib(p.disk_mib),
                f"{seed[p.name].cpus}/{format_mib(seed[p.name].memory_mib)}/"
                f"{format_mib(seed[p.name].disk_mib)}",
                p.purpose,
            ]
            for p in profiles.values()
        ]
        + [
            [
                t.name,
                str(profiles[t.profile].cpus),
                format_mib(profiles[t.profile].memory_mib),
                format_mib(profiles[t.profile].disk_mib),
                f"{t.profile}, {t.image}" + (f", {','.join(t.ports)}" if t.ports else ""),
                t.description,
            ]
            for t in shipped_templates().values()
        ],
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
