"""The root of every CargoBay error; each package adds its subtree under it."""

from __future__ import annotations


class CargoBayError(Exception):
    """Root of every error raised by cargobay."""
