"""Blob storage: uploaded files, adapters, checkpoints and results, behind one interface.

A blob is named by a key relative to ``$OPENFT_HOME`` (``files/file-abc``, ``jobs/ftjob-x/adapter``),
the same string the database stores. By default (``OPENFT_STORAGE_URL`` unset) blobs are plain
files under ``$OPENFT_HOME`` and every method here is free: nothing is copied. With
``OPENFT_STORAGE_URL`` set to an fsspec URL (``s3://bucket/openft``, ``gs://...``, ``file:///shared``,
``memory://openft``), the URL is the source of truth and ``$OPENFT_HOME`` is a local cache: a
process that needs a blob on disk (training reads a JSONL file; serving loads an adapter) calls
:meth:`BlobStore.local_path`, which downloads it once; a process that produced one calls
:meth:`BlobStore.publish`. So API replicas and workers on different machines share one storage.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from openft.settings import Settings


class BlobStore:
    """Keys under ``settings.home`` locally, mirrored to ``settings.storage_url`` when it is set."""

    def __init__(self, settings: Settings):
        self.home = settings.home
        self.url = (settings.storage_url or "").rstrip("/")
        self._fs: Any = None

    @property
    def is_local(self) -> bool:
        """True when blobs live only under ``$OPENFT_HOME`` (no remote storage)."""
        return not self.url

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of ``storage_url`` (imported on first use)."""
        if self._fs is None:
            import fsspec

            self._fs = fsspec.core.url_to_fs(self.url)[0]
        return self._fs

    def remote(self, key: str) -> str:
        """The full URL of ``key`` in the storage."""
        return f"{self.url}/{key.lstrip('/')}"

    def cache_path(self, key: str) -> Path:
        """Where ``key`` lives (local storage) or is cached (remote storage) on this machine."""
        path = (self.home / key).resolve()
        if not path.is_relative_to(self.home.resolve()):
            raise ValueError(f"blob key {key!r} leaves the storage root")
        return path

    def local_path(self, key: str) -> Path:
        """A local path holding blob ``key`` (a file or a directory), downloaded if needed.

        Raises:
            FileNotFoundError: the blob exists neither locally nor in the storage.
        """
        path = self.cache_path(key)
        if self.is_local or path.exists():
            return path
        remote = self.remote(key)
        if not self.fs.exists(remote):
            raise FileNotFoundError(remote)
        # Download beside the target, then rename, so a reader never sees half a blob.
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.fs.isdir(remote):
                self.fs.get(remote.rstrip("/") + "/", str(partial), recursive=True)
            else:
                self.fs.get(remote, str(partial))
            try:
                os.rename(partial, path)
            except OSError:  # another process cached it first
                if not path.exists():
                    raise
        finally:
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
        return path

    def fetch(self, key: str) -> Path:
        """Like :meth:`local_path`, but a blob that exists nowhere gives its (absent) local path."""
        try:
            return self.local_path(key)
        except FileNotFoundError:
            return self.cache_path(key)

    def publish(self, key: str) -> None:
        """Copy the local file or directory at ``key`` to the storage (nothing to do locally)."""
        if self.is_local:
            return
        path = self.cache_path(key)
        remote = self.remote(key)
        # Object stores have no directories; a file:// storage needs the parent to exist.
        self.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
        if path.is_dir():
            if self.fs.exists(remote):
                self.fs.rm(remote, recursive=True)
            self.fs.put(str(path).rstrip("/") + "/", remote, recursive=True)
        else:
            self.fs.put_file(str(path), remote)

    def exists(self, key: str) -> bool:
        if self.is_local:
            return self.cache_path(key).exists()
        return bool(self.fs.exists(self.remote(key)))

    def delete(self, key: str) -> None:
        """Remove ``key`` from the storage and the local cache; a missing blob is not an error."""
        path = self.cache_path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not self.is_local:
            remote = self.remote(key)
            if self.fs.exists(remote):
                self.fs.rm(remote, recursive=True)
