"""``python -m virga``: the command line in ``virga.cli``."""

import sys

from virga.cli import main

sys.exit(main())
