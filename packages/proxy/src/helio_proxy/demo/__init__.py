"""The bundled demo: an example MCP server and a config that governs it (``helio demo``)."""
