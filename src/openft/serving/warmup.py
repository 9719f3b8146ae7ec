"""Loading models before their first request: a server's first answer should not wait for torch's import,
the weights' load and their conversion.

``OPENFT_SERVING_PRELOAD`` names what an API process loads in the background as it starts:

* ``recent`` (default): the base models this home served most recently (``RECENT_FILE`` under
  ``$OPENFT_HOME``, written whenever a base model loads), at most ``RECENT_LIMIT``; nothing on a home
  that has served nothing, so a fresh install imports no torch until asked;
* ``none``;
* a comma-separated list of base model ids.

The load takes the same path as a request (``HFBackend.preload``), so a request arriving meanwhile waits
for that one load instead of starting another. Models that are unknown or fail to load are logged and
skipped: preloading never stops a server from starting.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECENT_FILE = "serving-recent.json"
RECENT_LIMIT = 2


def remember(home: Path, base_id: str) -> None:
    """Record that ``base_id`` was just loaded for serving (most recent first)."""
    path = home / RECENT_FILE
    ids = [i for i in _read(path) if i != base_id]
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([base_id, *ids][: RECENT_LIMIT * 4]))
        tmp.replace(path)
    except OSError as exc:  # a read-only home still serves
        log.warning("could not record recently served models in %s: %s", path, exc)


def preload_ids(setting: str, home: Path) -> list[str]:
    """The base model ids ``OPENFT_SERVING_PRELOAD`` asks for (see the module docstring)."""
    value = setting.strip()
    if value == "none" or not value:
        return []
    if value == "recent":
        return _read(home / RECENT_FILE)[:RECENT_LIMIT]
    return [part.strip() for part in value.split(",") if part.strip()]


def start(ids: list[str], backend: Callable[[], Any], find: Callable[[str], Any]) -> threading.Thread | None:
    """Load ``ids`` on a background thread through ``backend()``'s ``preload``; ``find`` maps an id to
    its ``BaseModel`` (None: unknown)."""
    if not ids:
        return None

    def run() -> None:
        for model_id in ids:
            started = time.monotonic()
            try:
                base = find(model_id)
                if base is None:
                    log.warning("not preloading %s: no such base model", model_id)
                    continue
                backend().preload(base)
            except Exception:
                log.exception("preloading %s failed", model_id)
                continue
            log.info("preloaded %s in %.1f s", model_id, time.monotonic() - started, extra={"action": "preloaded"})

    thread = threading.Thread(target=run, name="openft-preload", daemon=True)
    thread.start()
    return thread


def _read(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
