"""Which errors interrupt a run (a lost PostgreSQL connection) and which fail it."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import IntegrityError, OperationalError

from gradesync.services.database_lost import database_lost


def test_a_dropped_postgresql_connection_is_a_lost_database() -> None:
    dropped = OperationalError("UPDATE sync_runs ...", {}, psycopg.OperationalError("closed"))
    assert database_lost(dropped)
    assert database_lost(psycopg.OperationalError("connection refused"))
    try:
        try:
            raise dropped
        except OperationalError as exc:
            raise RuntimeError("writing the run") from exc
    except RuntimeError as wrapped:
        assert database_lost(wrapped)


def test_other_database_errors_are_not() -> None:
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert not database_lost(locked)
    assert not database_lost(IntegrityError("INSERT ...", {}, psycopg.IntegrityError("dup")))
    assert not database_lost(ValueError("bad input"))
