"""Logging for the long-running commands (`serve`, `worker`): plain text or one JSON object
per line (`GRADESYNC_LOG_FORMAT=json`), each line carrying the request id, tenant, run id
and destination it is about, where they apply."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from procrastinate import exceptions as pexc

from gradesync.services import log_context
from gradesync.services.database_lost import connection_lost

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


class ContextFilter(logging.Filter):
    """Copies the log context onto each record: `record.gradesync` (a dict) and, for the text
    format, `record.context` (` [tenant=... run_id=...]`, or nothing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = dict(log_context.current())
        for field in log_context.FIELDS:  # given with the line (`log_context.fields`)
            given = record.__dict__.get(log_context.PREFIX + field)
            if given:
                ctx[field] = given
        record.gradesync = ctx
        record.context = " [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]" if ctx else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context
    fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "gradesync", None) or log_context.current())
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class LostConnectionFilter(logging.Filter):
    """Drops procrastinate's lines whose traceback is a lost database connection (its
    listener's error, its worker stopping on it, a poll failing): `gradesync worker` says the
    loss in one line of its own (`lost the database (...); reconnecting`) and reconnects, so
    a traceback there is noise, not news. Its other errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("procrastinate") or not record.exc_info:
            return True
        exc = record.exc_info[1]
        return exc is None or not connection_lost(exc)


# procrastinate's `action` for the line that ends a job it aborted
_ABORTED = frozenset({"job_aborted", "job_aborted_retry"})


class AbortedJobFilter(logging.Filter):
    """Keeps procrastinate's line for a job it aborted (`ended with status: Aborted`), without
    the traceback of the cancellation that aborted it: its worker aborts the jobs still
    running whenever it stops (it loses the database, or the worker is asked to stop), and
    a run goes on in the engine (`run ... goes on in this worker; its job is let go`). A job
    that failed keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith("procrastinate")
            and getattr(record, "action", None) in _ABORTED
            and record.exc_info
            and isinstance(record.exc_info[1], asyncio.CancelledError | pexc.JobAborted)
        ):
            record.exc_info = None
            record.exc_text = None
        return True


def handler(fmt: str) -> logging.Handler:
    h = logging.StreamHandler()
    h.addFilter(LostConnectionFilter())
    h.addFilter(AbortedJobFilter())
    h.addFilter(ContextFilter())
    h.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return h


# The libraries whose INFO lines `DEBUG` adds (docs/operations.md): alembic's plugin and
# migration lines at every start (at INFO, a failed start is one line), and httpx's line per
# request (gradesync logs what a request meant: a delivery, a refusal).
DEBUG_ONLY = ("alembic", "httpx")


def configure(level: str, fmt: str) -> None:
    """Route every logger (uvicorn's included) through one handler on the root logger.

    No library logs below INFO, even at DEBUG: their debug lines print requests' parameters
    and bodies (oauthlib logs an LTI 1.1 launch's signature base string, with the learner's
    name, email and result sourcedid). `DEBUG` lowers gradesync's own loggers only."""
    level = level.upper()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(fmt))
    debug = level == "DEBUG"
    root.setLevel(logging.INFO if debug else level)
    logging.getLogger("gradesync").setLevel(logging.DEBUG if debug else logging.NOTSET)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    for name in DEBUG_ONLY:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
