"""Transport tests: TLS, WebSocket and WSS listeners (framing units, in-process servers, real clients)."""
