"""Agent-facing transports: how agents reach the proxy."""
