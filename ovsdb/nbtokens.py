"""API tokens in the northbound database: per-tenant bearer tokens every weftd replica honours.

A token is stored as the SHA-256 of its secret (never the secret: a copy of the database
grants nothing); the secret is shown once, when the token is created. Tokens of a tenant are
deleted with the tenant, so a tenant created again under the same name inherits none.
Lookups are lock-free: the store rebuilds an immutable {digest: (name, tenant)} map whenever
the Api_Token table changes (`_refresh_tokens`, called with the store lock held).
"""
from __future__ import annotations

import hashlib
import secrets

from topology import validate
from topology.errors import Conflict, NotFound

TABLE = "Api_Token"
SECRET_BYTES = 32


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStoreMixin:
    """Methods of NorthboundStore for the Api_Token table (needs _transact, _rows, lock)."""

    _tokens: dict = {}

    def _refresh_tokens(self) -> None:
        self._tokens = {row.digest: (row.name, row.tenant[0] if row.tenant else None)
                        for row in self._rows(TABLE)}

    def token_principal(self, secret: str) -> tuple[str, str | None] | None:
        """(token name, tenant) of the token with this secret, or None."""
        return self._tokens.get(digest(secret))

    def list_tokens(self) -> list[dict]:
        return sorted(({"name": n, "tenant": t} for n, t in self._tokens.values()),
                      key=lambda v: v["name"])

    def create_token(self, name: str, tenant: str) -> dict:
        """A new token for `tenant`; the answer holds its secret, which is never shown again."""
        validate.name("token", name)
        validate.name("tenant", tenant)
        secret = secrets.token_urlsafe(SECRET_BYTES)

        def build(txn):
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r}")
            if any(row.name == name for row in self._rows(TABLE)):
                raise Conflict(f"token {name!r} already exists")
            row = txn.insert(self.idl.tables[TABLE])
            row.name, row.tenant, row.digest = name, [tenant], digest(secret)
            return {"name": name, "tenant": tenant, "token": secret}
        return self._transact(build)

    def delete_token(self, name: str) -> dict:
        def build(txn):
            rows = [row for row in self._rows(TABLE) if row.name == name]
            if not rows:
                raise NotFound(f"no token named {name!r}")
            for row in rows:
                row.delete()
            return {"name": name, "deleted": True}
        return self._transact(build)

    def _delete_tokens_of(self, tenant: str) -> None:
        """Inside a transaction deleting `tenant`: its tokens go too."""
        for row in list(self._rows(TABLE)):
            if row.tenant and row.tenant[0] == tenant:
                row.delete()
