# Generated from proto/ by scripts/generate.py. Do not edit.
"""Generated protobuf and gRPC modules (private)."""
