"""Sans-I/O media core: codecs, framing and timing as pure functions and small classes.

Nothing in this package opens a socket, starts a task or reads a clock: bytes and
timestamps (float seconds, monotonic) go in, bytes and events come out.
"""
