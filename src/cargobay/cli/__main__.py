"""``python -m cargobay.cli`` is ``cargobay``."""

from cargobay.cli.main import main

main()
