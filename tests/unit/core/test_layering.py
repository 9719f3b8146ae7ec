"""The API process and the worker never import torch (it is loaded only to serve a model)."""

from __future__ import annotations

import subprocess
import sys


def test_api_worker_and_cli_do_not_import_torch() -> None:
    code = (
        "import sys, openft.api.app, openft.jobs.worker, openft.cli, openft.data.validation; "
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr[-2000:]}"
