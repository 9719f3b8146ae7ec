"""Uploaded files: stored as blobs under ``$OPENFT_HOME/files``, described by rows in the store."""
