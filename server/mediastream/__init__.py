"""mediastream: live call and conference audio from Asterisk, over gRPC and WebSocket."""
