"""Server-facing transports: how the proxy reaches an upstream MCP server."""
