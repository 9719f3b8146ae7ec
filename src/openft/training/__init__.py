"""The math: one training process per job, ``python -m openft.training SPEC.json``.

Only ``training.spec`` and ``training.events`` are pure Python; everything else imports torch
and is never imported by the API or the worker.
"""
