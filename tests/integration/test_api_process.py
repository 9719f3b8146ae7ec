"""What an API process does once at start-up."""

from __future__ import annotations

import gc

from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.settings import Settings


def test_startup_freezes_the_loaded_app_out_of_garbage_collection(settings: Settings) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = create_app(settings, embedded_worker=False)
    with TestClient(app) as http:
        # The imported framework, models and routes are tens of thousands of long-lived objects.
        assert gc.get_freeze_count() > 10_000
        assert http.get("/health").status_code == 200
