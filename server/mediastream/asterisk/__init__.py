"""The Asterisk side: ARI, externalMedia transports, and attaching streams to calls."""
