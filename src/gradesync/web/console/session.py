"""Who is signed in to the console: a signed session cookie holding (tenant, username).

The cookie is signed (Starlette's SessionMiddleware, keyed from the secret key), carries no
secret, and is re-checked against the database on every request, so a deleted user is out.
It also holds the account's session stamp (a digest of its password hash, which a new password
changes): a password change or reset ends the sessions opened before it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace
from datetime import datetime

from fastapi import FastAPI, HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gradesync.domain.model import ConsoleUser, UserRole
from gradesync.services import log_context
from gradesync.services.accounts import hash_password
from gradesync.services.ports import UnitOfWorkFactory

SESSION_KEY = "console_user"
STAMP_KEY = "stamp"
SESSION_COOKIE = "gradesync_session"
# A session opened inside an LMS frame (a launch proved through the platform's client-side
# storage): its cookie is partitioned to that LMS site (CHIPS), the only cookie such a
# cross-site frame keeps.
FRAMED_KEY = "framed"
FRAMED_SCOPE = "gradesync.framed_session"  # a framed session was cleared in this request


def session_secret(secret_key: str) -> str:
    # a key of its own, so the cookie signature never reveals anything about the encryption key
    return hashlib.sha256(b"gradesync-console-session|" + secret_key.encode()).hexdigest()


def install(app: FastAPI, secret_key: str, *, https_only: bool = False) -> None:
    """The signed session cookie the console's sign-in rides on."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(secret_key),
        session_cookie=SESSION_COOKIE,
        same_site="lax",
        https_only=https_only,
        max_age=12 * 3600,
    )
    app.add_middleware(FramedSessionCookie)  # outside the session middleware: sees its cookie


class FramedSessionCookie:
    """Rewrites a framed session's cookie to `SameSite=None; Secure; Partitioned`
    (Starlette's session middleware sets one set of attributes for every session)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            session = scope.get("session")
            framed = bool(session and session.get(FRAMED_KEY)) or scope.get(FRAMED_SCOPE)
            if message["type"] == "http.response.start" and framed:
                headers = MutableHeaders(scope=message)
                cookies = headers.getlist("set-cookie")
                if any(c.startswith(SESSION_COOKIE + "=") for c in cookies):
                    del headers["set-cookie"]
                    for cookie in cookies:
                        ours = cookie.startswith(SESSION_COOKIE + "=")
                        headers.append("set-cookie", partitioned(cookie) if ours else cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)


def partitioned(cookie: str) -> str:
    """A Set-Cookie value for a cross-site frame: SameSite=None, Secure, Partitioned."""
    parts = [p for p in cookie.split("; ") if p.lower() not in ("samesite=lax", "secure")]
    parts = [p for p in parts if not p.lower().startswith("samesite=")]
    return "; ".join([*parts, "samesite=none", "secure", "partitioned"])


def session_stamp(user: ConsoleUser) -> str:
    """The account's session generation: every new password (a fresh random salt, even for
    the same password) gives a new one. The hash's salt makes it unguessable from the cookie,
    which anyone holding it can read."""
    digest = hashlib.sha256(b"gradesync-session-stamp|" + user.password_hash.encode())
    return digest.hexdigest()[:32]


def sign_in(request: Request, user: ConsoleUser, *, course_id: str | None = None) -> None:
    """Start a console session (after a password check or a validated LTI launch)."""
    framed = _clear(request)
    request.session[SESSION_KEY] = {
        "tenant_id": user.tenant_id,
        "username": user.username,
        STAMP_KEY: session_stamp(user),
    }
    if course_id:
        request.session["home_course"] = course_id
    if framed:
        request.session[FRAMED_KEY] = True


def _clear(request: Request) -> bool:
    """Empty the session; a framed one stays framed (its cookie lives in the LMS's partition,
    so even the cookie that ends it must be partitioned). True when it was framed."""
    framed = bool(request.session.get(FRAMED_KEY))
    request.session.clear()
    if framed:
        request.scope[FRAMED_SCOPE] = True
    return framed


def sign_in_from_launch(
    request: Request,
    uow_factory: UnitOfWorkFactory,
    now: datetime,
    *,
    tenant_id: str,
    person_id: str,
    display_name: str,
    course_id: str,
    framed: bool = False,
) -> ConsoleUser:
    """After a validated LTI launch by an instructor: open the console in that course.

    The launch is the proof of identity, so the account has no usable password (a random
    one nobody knows); the course is added to the courses this instructor may see. An
    existing admin account of the same name keeps its role. `framed`: the session lives in the
    LMS's frame (a partitioned cookie; the launch proved the login through the platform's
    storage, over https)."""
    username = f"lti:{person_id}"
    with uow_factory() as uow:
        user = uow.users.get(tenant_id, username)
        if user is None:
            user = ConsoleUser(
                tenant_id=tenant_id,
                username=username,
                display_name=display_name or person_id,
                password_hash=hash_password(secrets.token_urlsafe(32)),
                role=UserRole.INSTRUCTOR,
                course_ids=(course_id,),
            )
        elif course_id not in user.course_ids:
            user = replace(user, course_ids=(*user.course_ids, course_id))
        uow.users.save(user, now)
        uow.commit()
    sign_in(request, user, course_id=course_id)
    if framed:
        request.session[FRAMED_KEY] = True
    return user


def sign_out(request: Request) -> None:
    _clear(request)


class LoginRequired(HTTPException):
    def __init__(self, next_url: str) -> None:
        super().__init__(status_code=303, headers={"Location": f"/console/login?next={next_url}"})


def current_user(request: Request) -> ConsoleUser:
    """FastAPI dependency: the signed-in user, or a redirect to the sign-in page."""
    user = signed_in(request)
    if user is None:
        raise LoginRequired(request.url.path)
    log_context.bind(tenant=user.tenant_id)
    return user


def signed_in(request: Request) -> ConsoleUser | None:
    """The signed-in user, if any (an error page keeps its menu and Sign out). A session of an
    account since deleted, or opened before its password last changed, is ended."""
    data = request.session.get(SESSION_KEY) if "session" in request.scope else None
    if not data:
        return None
    runtime = request.app.state.runtime
    with runtime.uow() as uow:
        user: ConsoleUser | None = uow.users.get(data["tenant_id"], data["username"])
    stamp = str(data.get(STAMP_KEY, ""))
    if user is None or not hmac.compare_digest(stamp, session_stamp(user)):
        _clear(request)
        return None
    return user
