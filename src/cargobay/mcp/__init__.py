"""cargobay.mcp: the MCP server (``cargobay mcp``) that offers CargoBay sandboxes as tools
to models, built on the official ``mcp`` SDK; it uses ``cargobay.sdk`` only."""
