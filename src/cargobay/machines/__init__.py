"""cargobay.machines."""
