"""cargobay.sdk."""
