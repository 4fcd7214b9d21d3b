"""Wiring: builds the adapters once per process and hands them to web, CLI and workers.

This is the only place that knows which concrete adapter implements which service port.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gradesync.adapters.db.database import Database
from gradesync.config import Settings, load_settings
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    # Set by the worker wiring (issue 4): in-process asyncio worker or procrastinate.
    waker: Waker | None = None

    @classmethod
    def create(cls, settings: Settings | None = None, *, migrate: bool | None = None) -> Runtime:
        """Build the runtime. Migrations are applied automatically on the embedded SQLite
        default (nobody else shares that file); on PostgreSQL run `gradesync db upgrade`."""
        settings = settings or load_settings()
        db = Database.from_settings(settings)
        if migrate if migrate is not None else db.is_sqlite:
            db.upgrade()
        elif not db.is_up_to_date():
            log.warning("the database schema is behind: run `gradesync db upgrade`")
        return cls(settings=settings, db=db)

    def close(self) -> None:
        self.db.dispose()
