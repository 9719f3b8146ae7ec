"""`python -m openft` is the `openft` command."""

from __future__ import annotations

from openft.cli import main

main()
