"""Marks a person's change puts on a column to have it looked at again before its next grade
(`domain.columns.look_mark`), each one new."""

from __future__ import annotations

from uuid import uuid4

from gradesync.domain.columns import look_mark


def new_look_mark() -> str:
    """A mark no column had before: a process that remembers the column as it read it, or
    a write of it on its way, never takes this change for one seen already."""
    return look_mark(uuid4().hex)
