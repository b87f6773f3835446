"""Hypervisor backends behind one Protocol (see ``base``); ``qemu`` is registered on Linux."""

import sys

from cargobay.hypervisors.base import (
    Features,
    Hypervisor,
    VMHandle,
    VMSpec,
    VMStatus,
    available,
    get,
    register,
)

__all__ = [
    "Features",
    "Hypervisor",
    "VMHandle",
    "VMSpec",
    "VMStatus",
    "available",
    "get",
    "register",
]

if sys.platform.startswith("linux"):
    from cargobay.hypervisors.qemu import QemuHypervisor

    register("qemu", QemuHypervisor)
