"""Base models: which exist (``catalog``, pure Python) and how to load them (``loader``, torch)."""
