"""Training data: JSONL file validation (pure Python, no torch) and the bundled example data."""
