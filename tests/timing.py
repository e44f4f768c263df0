"""Bounds for tests that must wait on real time (whole processes, real sockets)."""

from __future__ import annotations

LOADED_SLACK = 0.25
"""Seconds a timer, a wake-up or a delivery on loopback may run late on a busy machine.

The suite must pass while one of two cores is taken by other work and its own
gateways, emulators and clients share the other: the event loop then wakes late by
a scheduler slice now and then (tens of ms), rarely more. An upper bound on a
real-time wait is what the code promises plus this, never tighter. What such a
bound is there to catch (a queue drained twice, a frame put off to the end, a
missing relay) is far beyond it; lower bounds need no slack, since the code
promises never to be early.
"""
