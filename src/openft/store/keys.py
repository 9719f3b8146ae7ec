"""API keys: minted once, stored only as a SHA-256 hash, looked up by that hash.

:class:`KeyStore` mints, finds and revokes keys over the small :class:`ApiKeyRecords` protocol (its own
seam, reached as ``store.api_keys``): :class:`SqlApiKeys` here, ``MemoryApiKeys`` in ``store/memory_records.py``.

A key is 48 random characters (about 285 bits), so a plain SHA-256 is the right hash: there is nothing
to brute-force, and a salted slow hash would only make every request slower.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine, insert, select, update

from openft import ids
from openft.errors import InvalidRequest, NotFound
from openft.store import schema as s
from openft.store.mapper import RowMapper

if TYPE_CHECKING:
    from openft.store.base import Store

_ALPHABET = string.ascii_letters + string.digits
# Organization and project ids become part of fine-tuned model names, where ':' separates fields.
_OWNER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ApiKeyRow:
    id: str
    organization_id: str
    key_hash: str
    redacted: str
    """What listings show instead of the key: ``sk-…`` and its last four characters."""
    created_at: int
    project_id: str | None = None
    name: str | None = None
    revoked_at: int | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_owner_id(value: str, what: str) -> None:
    if not _OWNER_ID.match(value):
        raise InvalidRequest(f"{what} must be 1-64 letters, digits, '-' or '_' (got {value!r}).", param=what)


class ApiKeyRecords(Protocol):
    """The ``api_keys`` rows."""

    def insert(self, row: ApiKeyRow) -> None: ...

    def find_active(self, key_hash: str) -> ApiKeyRow | None:
        """The unrevoked key with this hash."""
        ...

    def any_exists(self) -> bool:
        """Whether any key, revoked or not, was ever stored."""
        ...

    def list(self, organization_id: str | None, *, include_revoked: bool) -> list[ApiKeyRow]:
        """Keys in creation order, of one organization or all."""
        ...

    def revoke(self, key_id: str, now: int) -> ApiKeyRow | None:
        """Revoke the active key ``key_id``; the row as revoked, or None when there was no active key."""
        ...


KEYS = RowMapper(ApiKeyRow, s.api_keys)


class SqlApiKeys:
    """:class:`ApiKeyRecords` in the ``api_keys`` table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert(self, row: ApiKeyRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.api_keys).values(**KEYS.values(row)))

    def find_active(self, key_hash: str) -> ApiKeyRow | None:
        query = KEYS.select().where(s.api_keys.c.key_hash == key_hash, s.api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return KEYS.maybe(conn.execute(query).first())

    def any_exists(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(s.api_keys.c.seq).limit(1)).first() is not None

    def list(self, organization_id: str | None, *, include_revoked: bool) -> list[ApiKeyRow]:
        query = KEYS.select().order_by(s.api_keys.c.seq)
        if organization_id is not None:
            query = query.where(s.api_keys.c.organization_id == organization_id)
        if not include_revoked:
            query = query.where(s.api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return KEYS.all(conn.execute(query))

    def revoke(self, key_id: str, now: int) -> ApiKeyRow | None:
        revoke = (
            update(s.api_keys)
            .where(s.api_keys.c.id == key_id, s.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        with self.engine.begin() as conn:
            if conn.execute(revoke).rowcount != 1:
                return None
            return KEYS.maybe(conn.execute(KEYS.select().where(s.api_keys.c.id == key_id)).first())


class KeyStore:
    """Create, find, list and revoke API keys."""

    def __init__(self, store: Store):
        self.records = store.api_keys
        self.generation = 0
        """Bumped by every create and revoke made through this object, so callers caching lookups know."""

    def create(
        self, organization_id: str, project_id: str | None = None, name: str | None = None
    ) -> tuple[ApiKeyRow, str]:
        """Mint a key for ``organization_id`` (and ``project_id``).

        Returns:
            The stored row and the key itself, which is never stored and cannot be shown again.

        Raises:
            InvalidRequest: an organization or project id with characters a model name cannot carry.
        """
        _check_owner_id(organization_id, "organization")
        if project_id is not None:
            _check_owner_id(project_id, "project")
        key = "sk-" + "".join(secrets.choice(_ALPHABET) for _ in range(48))
        row = ApiKeyRow(
            id=ids.new_api_key_id(),
            organization_id=organization_id,
            project_id=project_id,
            name=name,
            key_hash=hash_key(key),
            redacted=f"sk-...{key[-4:]}",
            created_at=int(time.time()),
        )
        self.records.insert(row)
        self.generation += 1
        return row, key

    def find(self, key: str) -> ApiKeyRow | None:
        """The active key whose hash matches ``key``; None for an unknown or revoked key."""
        digest = hash_key(key)
        found = self.records.find_active(digest)
        if found is None or not hmac.compare_digest(found.key_hash, digest):
            return None
        return found

    def any_configured(self) -> bool:
        """Whether any key was ever created: then every request needs a valid one. Revoked keys count, so
        revoking the last key locks the server instead of opening it to everyone."""
        return self.records.any_exists()

    def list(self, organization_id: str | None = None, *, include_revoked: bool = False) -> list[ApiKeyRow]:
        return self.records.list(organization_id, include_revoked=include_revoked)

    def revoke(self, key_id: str) -> ApiKeyRow:
        """Revoke a key by its id (``key_…``); requests with it fail from then on.

        Raises:
            NotFound: no active key with that id.
        """
        row = self.records.revoke(key_id, int(time.time()))
        self.generation += 1
        if row is None:
            raise NotFound(f"No active API key with id {key_id}.", param="key_id", code="api_key_not_found")
        return row
