"""Runs in the guest: record key presses and pointer motion from every input device.

Writes one line per event to the file named on the command line ("key CODE" for a key
press, "rel AXIS VALUE" / "abs AXIS VALUE" for motion, "btn CODE" for a button press), for as many
seconds as the second argument says.  Used by examples/scenarios/inputs.yaml to check
that keys and mouse events sent from the host really reach the guest's kernel.
"""

import glob
import os
import select
import struct
import subprocess
import sys
import time

EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit: timeval, type, code, value
EV_KEY, EV_REL, EV_ABS = 1, 2, 3

out_path, seconds = sys.argv[1], float(sys.argv[2])
# the PS/2 keyboard and mouse drivers and evdev may be modules; load what is there
subprocess.run(["modprobe", "-a", "-q", "evdev", "atkbd", "psmouse"], check=False)
time.sleep(0.5)
fds = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in glob.glob("/dev/input/event*")]
with open(out_path, "w") as out:
    out.write(f"ready {len(fds)}\n")
    out.flush()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select(fds, [], [], 0.2)
        for fd in ready:
            data = os.read(fd, EVENT.size * 64)
            for i in range(0, len(data) - EVENT.size + 1, EVENT.size):
                _, _, etype, code, value = EVENT.unpack_from(data, i)
                if etype == EV_KEY and value == 1:
                    out.write(("btn" if code >= 0x100 else "key") + f" {code}\n")
                elif etype == EV_REL:
                    out.write(f"rel {code} {value}\n")
                elif etype == EV_ABS:
                    out.write(f"abs {code} {value}\n")
            out.flush()
