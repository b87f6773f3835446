"""Fixtures shared by the vmcontrol integration tests: QEMU's Spice server (one per module)."""

from tests.integration.vmcontrol.test_spice_qemu import spice_server, x509_dir

__all__ = ["spice_server", "x509_dir"]
