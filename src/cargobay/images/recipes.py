"""Named image recipes: which ``ImageRecipe`` an image name is built from.

``default`` is ``build.DEFAULT_RECIPE``, with the minimal kernel (``minikernel``).
``debian`` is the same root filesystem with Debian's cloud kernel and its modules (the
image for guests that need a module the minimal kernel leaves out: input devices for
the ATP's Spice scenarios, Docker's networking).  ``docker`` is the default recipe plus Debian's
Docker engine (``docker.io``, which brings containerd, runc, tini and iptables), for
``cargobay docker-socket --vm``: its guest's cargobay-init starts dockerd when
``/usr/sbin/dockerd`` is there (see ``images/guest/cargobay-init``), with its data root
on the machine's data disk, bridge networks between containers, and no iptables rules
(``--iptables=false``: no NAT or published ports; the socket is reached through the guest
agent, not the network, and a TCG guest starts faster without them); it keeps Debian's
kernel, whose modules dockerd loads (overlay, bridge, veth, netfilter).

Any other name is built from the default recipe (``recipe_for``), as before.  This module
only names recipes; ``build_image`` takes the recipe as an argument, and the callers
(the daemon's image builds, ``tests/prebuild.py``) pass ``recipe_for(name)``.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Final

from cargobay.images.build import DEFAULT_RECIPE, ImageRecipe, KernelKind

__all__ = [
    "DEBIAN_IMAGE",
    "DOCKER_IMAGE",
    "DOCKER_PACKAGES",
    "DOCKER_RECIPE",
    "RECIPES",
    "recipe_for",
]

DOCKER_IMAGE: Final = "docker"
"""The image name ``cargobay docker-socket --vm`` machines are created from."""

DOCKER_PACKAGES: Final = ("docker.io",)
"""Added to the default packages.  debootstrap resolves Depends (containerd, runc,
tini, iptables ...) but not Recommends, which keeps the image small."""

DOCKER_RECIPE: Final = dataclasses.replace(
    DEFAULT_RECIPE,
    kernel="debian",
    packages=(*DEFAULT_RECIPE.packages, *DOCKER_PACKAGES),
    hostname="cargobay-docker",
)

DEBIAN_IMAGE: Final = "debian"
"""The default recipe with Debian's packaged kernel instead of the minimal one."""

RECIPES: Final = MappingProxyType(
    {
        "default": DEFAULT_RECIPE,
        DEBIAN_IMAGE: dataclasses.replace(DEFAULT_RECIPE, kernel="debian"),
        DOCKER_IMAGE: DOCKER_RECIPE,
    }
)
"""The recipes that have a name of their own."""


def recipe_for(name: str, kernel: KernelKind | None = None) -> ImageRecipe:
    """The recipe image ``name`` is built from (the default one for other names), with
    ``kernel`` instead of the recipe's own kernel when given."""
    recipe = RECIPES.get(name, DEFAULT_RECIPE)
    return recipe if kernel is None else dataclasses.replace(recipe, kernel=kernel)
