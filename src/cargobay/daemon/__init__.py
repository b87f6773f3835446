"""cargobay.daemon."""
