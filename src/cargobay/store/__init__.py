"""cargobay.store."""
