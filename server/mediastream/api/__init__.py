"""Client-facing adapters: gRPC (and later the WebSocket shim)."""
