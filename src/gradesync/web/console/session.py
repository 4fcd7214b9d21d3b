"""Who is signed in to the console: a signed session cookie holding (tenant, username).

The cookie is signed (Starlette's SessionMiddleware, keyed from the secret key), carries no
secret, and is re-checked against the database on every request, so a deleted user is out.
"""

from __future__ import annotations

import hashlib

from fastapi import HTTPException, Request
from starlette.middleware.sessions import SessionMiddleware

from gradesync.domain.model import ConsoleUser

SESSION_KEY = "console_user"


def session_secret(secret_key: str) -> str:
    # a key of its own, so the cookie signature never reveals anything about the encryption key
    return hashlib.sha256(b"gradesync-console-session|" + secret_key.encode()).hexdigest()


def install(app: object, secret_key: str, *, https_only: bool = False) -> None:
    app.add_middleware(  # type: ignore[attr-defined]
        SessionMiddleware,
        secret_key=session_secret(secret_key),
        session_cookie="gradesync_session",
        same_site="lax",
        https_only=https_only,
        max_age=12 * 3600,
    )


def sign_in(request: Request, user: ConsoleUser, *, course_id: str | None = None) -> None:
    """Start a console session (after a password check or a validated LTI launch)."""
    request.session.clear()
    request.session[SESSION_KEY] = {"tenant_id": user.tenant_id, "username": user.username}
    if course_id:
        request.session["home_course"] = course_id


def sign_out(request: Request) -> None:
    request.session.clear()


class LoginRequired(HTTPException):
    def __init__(self, next_url: str) -> None:
        super().__init__(status_code=303, headers={"Location": f"/console/login?next={next_url}"})


def current_user(request: Request) -> ConsoleUser:
    """FastAPI dependency: the signed-in user, or a redirect to the sign-in page."""
    data = request.session.get(SESSION_KEY)
    if data:
        runtime = request.app.state.runtime
        with runtime.db.uow() as uow:
            user: ConsoleUser | None = uow.users.get(data["tenant_id"], data["username"])
        if user is not None:
            return user
    raise LoginRequired(request.url.path)
