"""Logging set up as `gradesync serve` sets it (`logs.configure`), written to a string, and
put back as it was afterwards."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from gradesync import logs


@contextmanager
def configured(level: str, fmt: str = "text") -> Iterator[io.StringIO]:
    """What the process logs at `level` while the block runs."""
    root = logging.getLogger()
    saved, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        logs.configure(level, fmt)
        [h] = root.handlers
        assert isinstance(h, logging.StreamHandler)
        h.setStream(stream)
        yield stream
    finally:
        for name in ("alembic", "httpx", "gradesync"):  # the levels configure sets
            logging.getLogger(name).setLevel(logging.NOTSET)
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(saved_level)
