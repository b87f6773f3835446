"""cargobay.cli: the ``cargobay`` and ``aiva`` command lines (typer + rich).

They reach the services only through cargobayd, via ``cargobay.sdk``:

    app        error reporting, exit codes, the typer group both apps use
    inputs     checks of sizes, ports, env before anything is sent
    output     tables, JSON/YAML, progress, step timings
    session    the SDK client; starts the daemon when it is not running
    templates  aiva's resource profiles scaled to this host
    machines   the machine verbs (``cargobay vm ...`` = ``aiva ...``)
    main       ``cargobay``: daemon, vm, image, run
    aiva       ``aiva``: the verbs at top level
"""
