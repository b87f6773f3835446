"""``python3 -m cargobay.guest``: the guest agent as the VM runs it (cargobay-init execs this).

asyncio imports ``ssl`` when it can, which loads libssl: about 0.1 s of a TCG guest's boot
for a module the agent never uses.  Marking it absent here, in the program's entry point
only, makes asyncio take its no-SSL path; importing ``cargobay.guest.agent`` elsewhere
(tests, the host) is unaffected.
"""

import sys

sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

from cargobay.guest.agent import main  # noqa: E402

sys.exit(main())
