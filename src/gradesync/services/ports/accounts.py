"""Console users and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gradesync.domain.model import ApiKey, ConsoleUser


class UserRepo(Protocol):
    def get(self, tenant_id: str, username: str, *, for_update: bool = False) -> ConsoleUser | None:
        """for_update: the row stays locked until the transaction ends (an update keeps the
        fields it is not given as read)."""

    def find_by_username(self, username: str) -> list[ConsoleUser]:
        """Users of that name in every tenant."""

    def save(self, user: ConsoleUser, now: datetime) -> None:
        """Create or update a user; `now` stamps a new one."""

    def add(self, user: ConsoleUser, now: datetime) -> bool:
        """Create a user; False (and nothing written) when its username is taken in its
        tenant, by one committed before or being made by a transaction this one then waits
        for."""

    def all(self, tenant_id: str) -> list[ConsoleUser]: ...

    def delete(self, tenant_id: str, username: str) -> bool:
        """False when there is no such user."""


class ApiKeyRepo(Protocol):
    """A key is stored as the SHA-256 of its token, never the token itself."""

    def get(self, key_id: str) -> ApiKey | None: ...

    def add(self, key: ApiKey) -> None: ...

    def revoke(self, tenant_id: str, key_id: str, now: datetime) -> bool:
        """False when there is no such key or it was already revoked."""

    def all(self, tenant_id: str) -> list[ApiKey]: ...
