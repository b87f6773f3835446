"""A Spice client (the first in Python): sans-IO link and channel cores plus an asyncio adapter.

link.py       the link stage of one channel (REDQ 2.2, RSA-OAEP ticket, link result)
channel.py    framing, SET_ACK/ACK and PING/PONG housekeeping, client messages
messages.py   decoded server messages (main, inputs, display, cursor) and encoders
keys.py       PC-AT scancodes, key combos and US-ASCII text
client.py     asyncio: SpiceChannel (one TCP/TLS connection), SpiceVmConnection, probe()
"""
