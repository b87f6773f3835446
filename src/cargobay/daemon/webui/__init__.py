"""The web GUI's side of the daemon: the built React app at ``/ui/``, the token guard for
TCP clients (:mod:`.auth`), and the few endpoints the GUI needs (:mod:`.routes`:
machine metrics, compose file read/save, settings, the GUI's address)."""
