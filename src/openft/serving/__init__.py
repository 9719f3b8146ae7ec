"""Serving: model ids resolved to base models and adapters, and the backends that generate text.

Nothing here knows HTTP (``api/inference.py`` does) and nothing here imports torch at import time;
``serving/hf.py`` imports it when a model is first served.
"""
