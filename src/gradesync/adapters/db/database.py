"""The database as the rest of gradesync sees it: an engine, migrations and units of work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, inspect, select
from sqlalchemy.engine import make_url

from gradesync.adapters.db import migrate, sqlite_gate
from gradesync.adapters.db import schema as t
from gradesync.adapters.db.engine import is_sqlite, make_engine, make_read_engine, normalise_url
from gradesync.adapters.db.uow import SqlUnitOfWork
from gradesync.adapters.secretbox import SecretBox
from gradesync.config import Settings


class SchemaNewer(Exception):
    """The database is at a revision a newer release applied: this release must not run on
    it, nor migrate it."""

    def __init__(self, revisions: list[str]) -> None:
        self.revisions = revisions
        super().__init__(
            f"the database is at {', '.join(revisions)}, newer than this release's "
            "migrations: run the release that upgraded it (or restore a backup taken before)"
        )


class SchemaNewerWrite(SchemaNewer):
    """A command that writes, on a schema a newer release upgraded: what it would write (in
    tables whose columns this release does not know) is refused, and nothing is kept."""

    def __init__(self, revisions: list[str]) -> None:
        self.revisions = revisions
        Exception.__init__(
            self,
            "this release does not write to a database a newer release upgraded (it is at "
            f"{', '.join(revisions)}): nothing was changed; run the release that upgraded it",
        )


class Database:
    def __init__(
        self, url: str, secret_key: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10
    ) -> None:
        self.url = normalise_url(url)
        self.engine: Engine = make_engine(
            self.url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size
        )
        self.box = SecretBox(secret_key)
        self._pool_size = pool_size
        self._read_engine: Engine | None = None
        self._bulk_engine: Engine | None = None
        self._newer: list[str] = []  # set by `refuse_writes`

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        key, unsaved = settings.secret_key_or_new()
        db = cls(
            settings.resolved_database_url, key, sqlite_synchronous=settings.sqlite_synchronous
        )
        if unsaved is not None:
            # a new key is kept only for a database without secrets: beside stored secrets
            # it decrypts nothing, and a stray key file would pass for the deployment's
            try:
                db.check_secret_key()
                kept = settings.keep_secret_key(key, unsaved)
                if kept != key:  # another process starting at the same time kept its key
                    db.box = SecretBox(kept)
                    db.check_secret_key()
            except BaseException:
                db.dispose()
                raise
        return db

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @property
    def sqlite_file(self) -> Path | None:
        """The database file on SQLite (None for PostgreSQL or an in-memory database)."""
        if not self.is_sqlite:
            return None
        name = make_url(self.url).database
        return Path(name) if name and name != ":memory:" else None

    def refuse_writes(self, newer: list[str]) -> None:
        """Every unit of work's commit refuses from now on (SchemaNewerWrite): the schema is
        at `newer`, revisions of a newer release. Reads go on."""
        self._newer = list(newer)

    def check_writable(self) -> None:
        """Raise SchemaNewerWrite when writes are refused (`refuse_writes`): a command that
        is going to write asks first, before it reads or calls anything."""
        if self._newer:
            raise SchemaNewerWrite(self._newer)

    def _refusal(self) -> Callable[[], Exception] | None:
        newer = self._newer
        return (lambda: SchemaNewerWrite(newer)) if newer else None

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.box, self._refusal())

    def reads(self) -> SqlUnitOfWork:
        """A unit of work that only reads. On SQLite it takes no write lock, so it never
        waits for a writer (every `uow` does: its transactions begin IMMEDIATE); a write in
        it fails. On PostgreSQL readers never wait for writers: the same as `uow`."""
        if not self.is_sqlite:
            return self.uow()
        return SqlUnitOfWork(self._reading_engine(), self.box, self._refusal())

    def _reading_engine(self) -> Engine:
        """On SQLite the engine of `reads` (no write lock taken); else the one engine."""
        if not self.is_sqlite:
            return self.engine
        if self._read_engine is None:
            self._read_engine = make_read_engine(self.url, pool_size=self._pool_size)
        return self._read_engine

    def bulk(self) -> SqlUnitOfWork:
        """A unit of work for bulk writes (a run recomputing its scope, chunk after chunk).
        On SQLite its transaction lets the process's other writers waiting go first (for up
        to two seconds, `sqlite_gate`): live grades do not queue behind a remaster's
        chunks. On PostgreSQL, where writers of different rows do not wait for each other,
        the same as `uow`."""
        if not self.is_sqlite:
            return self.uow()
        if self._bulk_engine is None:
            self._bulk_engine = self.engine.execution_options(**{sqlite_gate.BULK: True})
        return SqlUnitOfWork(self._bulk_engine, self.box, self._refusal())

    def write_lock_free(self, wait: float) -> bool:
        """SQLite only: whether its write lock can be taken now (`sqlite_gate`)."""
        return sqlite_gate.write_lock_free(self.engine, wait)

    def check_secret_key(self) -> None:
        """Raise SecretBoxError unless this process's secret key decrypts every secret stored
        (the destinations' and the tool keys'): a process started with another key (a new
        machine without GRADESYNC_SECRET_KEY, which generates one) would fail each grade it
        works out and each send, one by one, instead of refusing to start."""
        with self.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())  # a database not yet migrated
            for column in (t.destinations.c.secret_ciphertext, t.tool_keys.c.private_ciphertext):
                if column.table.name not in present:
                    continue
                for (token,) in conn.execute(select(column).where(column.is_not(None))):
                    self.box.decrypt(token)

    def upgrade(self) -> None:
        if newer := self.newer_revisions():
            raise SchemaNewer(newer)
        migrate.upgrade(self.engine)

    def is_up_to_date(self) -> bool:
        # a read: on SQLite it does not wait for another process's write lock
        return migrate.is_up_to_date(self._reading_engine())

    def newer_revisions(self) -> list[str]:
        """The revisions a newer release applied, which this code does not know."""
        return sorted(migrate.newer_revisions(self._reading_engine()))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()
