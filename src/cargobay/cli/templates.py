"""``aiva templates`` / ``--template``: the CLI's view of the machine templates.

The profiles, their scaling to the host and the shipped templates live in
:mod:`cargobay.machines.templates` (the daemon resolves ``--template`` when it creates a
machine); this module re-exports them for the ``templates`` listing.
"""

from __future__ import annotations

from cargobay.machines.templates import (
    SEED_PROFILES,
    Profile,
    host_resources,
    known_templates,
    scale_factor,
    scaled_profiles,
    shipped_templates,
)
from cargobay.machines.templates import resolve_template as _resolve

__all__ = [
    "SEED_PROFILES",
    "Profile",
    "host_resources",
    "known_templates",
    "resolve_template",
    "scale_factor",
    "scaled_profiles",
    "shipped_templates",
]


def resolve_template(name: str, host: tuple[int, int] | None = None) -> Profile:
    """The scaled profile a template name stands for (a shipped template's profile)."""
    return _resolve(name, host).profile
