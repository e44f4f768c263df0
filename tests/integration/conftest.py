"""Integration tests share the harness of tests/harness.py (re-exported for old imports)."""

from tests.harness import GATEWAY_CHANNELS, Harness

__all__ = ["GATEWAY_CHANNELS", "Harness"]
