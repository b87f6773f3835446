"""cargobay.guest."""
