"""cargobay.images."""
