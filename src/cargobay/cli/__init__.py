"""cargobay.cli."""
