"""cargobay.guest: the guest agent (runs inside the VM) and its host-side client.

    protocol     the wire protocol (its docstring is the spec); standard library only
    channel      the sync preamble and frame I/O; standard library + virga
    agent        ``python3 -m cargobay.guest.agent``, with agent_exec and agent_files
    client       ``AgentClient`` / ``wait_ready``, the typed host side

This package's ``__init__`` imports nothing: the agent runs it inside the guest, where
only the standard library and virga exist (the client needs ``cargobay.errors``).
Import the client as ``from cargobay.guest.client import AgentClient``.
"""
