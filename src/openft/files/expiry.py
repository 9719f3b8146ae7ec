"""Files that expire (``expires_after``): the accepted range, and the sweep that deletes expired files.

A file is gone for every request from its ``expires_at`` on: the store filters file reads by the
clock. The sweep reclaims what is left, the row and the bytes, every ``settings.file_sweep_seconds``.

It runs in every API process (a thread started with the app), not in the job worker: every
deployment has API processes, and the API is what accepts files, while a worker may run elsewhere
or not at all (``openft serve --no-worker``). Several sweepers on one database are safe, with
nothing to coordinate: each deletes a file's bytes first (deleting missing bytes is not an error),
then its row, under the same expiry condition; a sweeper that dies in between leaves a row that
reads already ignore and the next sweep removes with the bytes, never bytes without a row.
"""

from __future__ import annotations

import logging
import threading
import time

from openft.errors import InvalidRequest
from openft.settings import Settings
from openft.store import Store
from openft.store.blobs import BlobStore

log = logging.getLogger(__name__)

MAX_EXPIRES_AFTER_SECONDS = 2_592_000
"""30 days: OpenAI's longest ``expires_after``."""

GRACE_SECONDS = 5.0
"""Bytes outlive their file by this long, so a download or a validation that read the row just before
it expired still finds them."""

BATCH = 100


def check_expires_after(settings: Settings, seconds: int | None, *, param: str) -> None:
    """Refuse an ``expires_after`` outside ``[settings.file_expires_after_min_seconds, 30 days]``.

    Raises:
        InvalidRequest: ``seconds`` out of range.
    """
    low = settings.file_expires_after_min_seconds
    if seconds is not None and not low <= seconds <= MAX_EXPIRES_AFTER_SECONDS:
        raise InvalidRequest(
            f"{param} must be between {low} and {MAX_EXPIRES_AFTER_SECONDS} (got {seconds}).", param=param
        )


class FileSweeper:
    """Deletes the rows and bytes of expired files."""

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.blobs = BlobStore(settings)

    def sweep(self, now: float | None = None) -> int:
        """Delete every file that expired ``GRACE_SECONDS`` before ``now``; returns how many rows went."""
        before = (time.time() if now is None else now) - GRACE_SECONDS
        removed = 0
        while True:
            batch = self.store.expired_files(before, BATCH)
            deleted_bytes = [file_id for file_id, blob_path in batch if self._delete_bytes(file_id, blob_path)]
            removed += self.store.delete_expired_files(deleted_bytes, before)
            if len(batch) < BATCH or not deleted_bytes:
                return removed

    def _delete_bytes(self, file_id: str, blob_path: str) -> bool:
        try:
            self.blobs.delete(blob_path)
        except FileNotFoundError:  # another sweeper got there first
            pass
        except Exception:
            # Keep the row, so a later sweep tries the bytes again; readers ignore it meanwhile.
            log.exception("could not delete the bytes of expired file %s", file_id)
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        """Sweep every ``settings.file_sweep_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                if count := self.sweep():
                    log.info("deleted %d expired files", count)
            except Exception:  # a database hiccup must not end the sweeping
                log.exception("file expiry sweep failed")
            stop.wait(self.settings.file_sweep_seconds)
