"""Hypervisor backends behind one Protocol (see ``base``); ``qemu`` is registered on Linux."""

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
