"""Stored chat completions (``store: true``): keeping, reading, relabelling and deleting them (no HTTP, no torch)."""
