"""CargoBay: run isolated workloads in lightweight VMs and containers on a developer's machine."""

__version__ = "0.1.0"
