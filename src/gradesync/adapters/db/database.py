"""The database as the rest of gradesync sees it: an engine, migrations and units of work."""

from __future__ import annotations

from sqlalchemy import Engine

from gradesync.adapters.db import migrate
from gradesync.adapters.db.engine import is_sqlite, make_engine, normalise_url
from gradesync.adapters.db.uow import SqlUnitOfWork
from gradesync.adapters.secretbox import SecretBox
from gradesync.config import Settings


class Database:
    def __init__(
        self, url: str, secret_key: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10
    ) -> None:
        self.url = normalise_url(url)
        self.engine: Engine = make_engine(
            self.url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size
        )
        self.box = SecretBox(secret_key)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.resolved_database_url,
            settings.resolved_secret_key(),
            sqlite_synchronous=settings.sqlite_synchronous,
        )

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.box)

    def upgrade(self) -> None:
        migrate.upgrade(self.engine)

    def is_up_to_date(self) -> bool:
        return migrate.is_up_to_date(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
