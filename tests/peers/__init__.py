"""Test peers: an MCP server exposing every feature the proxy relays, and a client script."""
