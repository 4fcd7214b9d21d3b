"""Destinations page: the gradebooks grades go to. Add an LMS (LTI 1.3 platform or LTI 1.1
consumer) or a SIS (OneRoster 1.2), check that one works, pause or resume it, and copy the
values to paste into the LMS. Secrets are write-only: never shown back."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gradesync.adapters.destinations.ags_profiles import PROFILE_NAMES
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.errors import Conflict, InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, Destination
from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import destination_admin, destination_check
from gradesync.services.diagnostics import unreachable
from gradesync.web.console.common import (
    PageError,
    admin_user,
    check_csrf,
    flash,
    page_labels,
    problems_text,
    render,
    runtime_of,
)

log = logging.getLogger(__name__)
router = APIRouter()

KIND_LABELS = {
    "lti13_ags": "LMS (LTI 1.3)",
    "lti11_outcomes": "LMS (LTI 1.1)",
    "oneroster_rest": "SIS (OneRoster 1.2)",
    "oneroster_csv": "SIS (OneRoster CSV files)",
}
# the AGS profiles by their LMS's name (the value sent is the profile's)
PROFILE_WORDS = {
    "generic": "Another LMS (standard LTI 1.3)",
    "canvas": "Canvas",
    "moodle": "Moodle",
    "brightspace": "D2L Brightspace",
    "openedx": "Open edX",
    "blackboard": "Blackboard Learn",
    "schoology": "Schoology",
}
# Settings worth showing in the list (never anything from `secret`).
SHOWN_CONFIG = (
    "issuer",
    "client_id",
    "deployment_ids",
    "consumer_key",
    "allowed_hosts",
    "base_url",
    "token_url",
)


def limits_said(config: dict[str, Any]) -> str | None:
    """A destination's limits as its row says them (None: it has none): grades waiting
    behind a slow rate are explained where the destination is listed, not only in a cell's
    diagnosis."""
    parts = []
    if config.get("concurrency"):
        parts.append(f"{config['concurrency']} request(s) at once")
    rate = config.get("rate_per_second")
    if rate:
        every = f" (one every {1 / rate:.3g} s)" if rate < 1 else ""
        parts.append(f"{rate:g} request(s) a second{every}")
    return ", ".join(parts) or None


def paste_values(base_url: str) -> list[tuple[str, str]]:
    """What an LMS admin copies into the LMS when registering gradesync."""
    from gradesync.lti.registration import tool_urls

    urls = tool_urls(base_url)
    base = base_url.rstrip("/")
    return [
        (
            "LTI 1.3 registration URL (an LMS with Dynamic Registration: paste only this one)",
            f"{base}/console/lti/register",
        ),
        ("LTI 1.3 OpenID Connect login (initiation) URL", urls["oidc_login_url"]),
        ("LTI 1.3 target link / launch URL", urls["target_link_uri"]),
        ("LTI 1.3 redirect URI", urls["redirect_uri"]),
        ("LTI 1.3 deep linking URL", urls["deep_linking_url"]),
        ("LTI 1.3 public key set (JWKS) URL", urls["jwks_url"]),
        ("LTI 1.3 configuration JSON (Canvas: paste this URL)", f"{base}/lti/canvas.json"),
        ("Tool domain", urls["domain"]),
        ("LTI 1.1 launch URL", f"{base}/lti11/launch"),
    ]


def _rows(rt: Runtime, tenant_id: str) -> list[dict[str, Any]]:
    out = []
    now = rt.clock.now()
    with rt.uow() as uow:
        for d in sorted(uow.destinations.all(tenant_id), key=lambda d: d.name.lower()):
            view = destination_admin.public_view(d, now)
            out.append(
                {
                    "d": view,
                    "kind_label": KIND_LABELS.get(d.kind.value, d.kind.value),
                    "shown": [
                        (k, view["config"][k]) for k in SHOWN_CONFIG if view["config"].get(k)
                    ],
                    "counts": cq.status_counts(uow, tenant_id, d),
                    "limits": limits_said(view["config"]),
                }
            )
    return out


def _page(request: Request, user: ConsoleUser, *, status: int = 200, **extra: Any) -> HTMLResponse:
    rt = runtime_of(request)
    return render(
        request,
        "console/destinations.html",
        user,
        status=status,
        nav="destinations",
        rows=_rows(rt, user.tenant_id),
        paste=paste_values(rt.settings.base_url),
        profiles=[(p, PROFILE_WORDS.get(p, p)) for p in PROFILE_NAMES],
        profile_words=PROFILE_WORDS,
        form=extra.pop("form", {}),
        open_form=extra.pop("open_form", ""),
        **extra,
    )


@router.get("/destinations", response_class=HTMLResponse)
def destinations_page(request: Request, user: ConsoleUser = Depends(admin_user)) -> HTMLResponse:
    return _page(request, user)


def _words(value: str) -> list[str]:
    return [v for v in re.split(r"[,\s]+", value or "") if v]


def _entries(value: str) -> list[str]:
    """A list typed as the form's hint says, commas (or lines) between entries: a space
    stays inside its entry, so `not a host!` is one host, refused whole."""
    return [v.strip() for v in re.split(r"[,\n]", value or "") if v.strip()]


def _save_platform(rt: Runtime, tenant_id: str, form: dict[str, str]) -> Destination:
    from gradesync.lti.registration import platform_of
    from gradesync.services.lti import platforms

    data: dict[str, Any] = {
        k: form[k].strip()
        for k in (
            "id",
            "name",
            "issuer",
            "client_id",
            "auth_login_url",
            "auth_token_url",
            "key_set_url",
            "profile",
        )
        if form.get(k, "").strip()
    }
    data["deployment_ids"] = _words(form.get("deployment_ids", ""))
    with rt.uow() as uow:
        dest = platforms.save_platform(
            uow, platform_of(tenant_id, data, rt.outbound), rt.clock.now()
        )
        uow.commit()
    return dest


def _refuse_taken(rt: Runtime, tenant_id: str, dest_id: str) -> None:
    """The Add forms add: an id in use is refused, not silently replaced (the service
    functions behind them also update)."""
    with rt.uow() as uow:
        taken = bool(dest_id) and uow.destinations.get(tenant_id, dest_id) is not None
    if taken:
        raise InvalidInput.one("id", "unique", f"A destination {dest_id!r} already exists.")


def _save_consumer(rt: Runtime, tenant_id: str, form: dict[str, str]) -> Destination:
    from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer

    _refuse_taken(rt, tenant_id, form.get("id", "").strip())
    spec = ConsumerSpec(
        tenant_id=tenant_id,
        destination_id=form.get("id", "").strip(),
        name=form.get("name", "").strip(),
        consumer_key=form.get("consumer_key", "").strip(),
        consumer_secret=form.get("consumer_secret", ""),
        allowed_hosts=tuple(_entries(form.get("allowed_hosts", ""))),
        profile=form.get("profile", "generic") or "generic",
    )
    with rt.uow() as uow:
        # `new`: an id taken since the check above is refused too, not replaced
        dest = add_consumer(uow, spec, rt.clock.now(), rt.outbound, new=True)
        uow.commit()
    return dest


def _save_sis(rt: Runtime, tenant_id: str, form: dict[str, str]) -> Destination:
    from gradesync.services.sis import add_connection

    dest_id = form.get("id", "").strip()
    # this form adds a REST connection; over an existing one it would turn a file-based SIS
    # into REST and replace its settings (they are changed under SIS passback)
    _refuse_taken(rt, tenant_id, dest_id)
    return add_connection(
        rt.uow,
        rt.clock,
        tenant_id=tenant_id,
        destination_id=dest_id,
        name=form.get("name", "").strip(),
        base_url=form.get("base_url", "").strip() or None,
        client_id=form.get("client_id", "").strip() or None,
        client_secret=form.get("client_secret") or None,
        token_url=form.get("token_url", "").strip() or None,
        file_based=False,
        guard=rt.outbound,
        new=True,  # an id taken since the check above is refused too, not replaced
    )


# the add forms' labels, for their refusals (the services name fields as the API does)
FORM_LABELS = {
    "id": "Short id",
    "destination_id": "Short id",
    "name": "Name",
    "issuer": "Issuer (platform id)",
    "client_id": "Client id",
    "client_secret": "Client secret",
    "deployment_ids": "Deployment id(s)",
    "auth_login_url": "Platform OIDC authorization URL",
    "auth_token_url": "Platform access token URL",
    "key_set_url": "Platform public key set (JWKS) URL",
    "consumer_key": "Consumer key",
    "consumer_secret": "Shared secret",
    "allowed_hosts": "LMS host names",
    "base_url": "OneRoster base URL",
    "token_url": "OAuth 2 token URL",
    "profile": "LMS",
}
page_labels(__name__, FORM_LABELS)  # for `form_refused` too

SAVERS: dict[str, Callable[[Runtime, str, dict[str, str]], Destination]] = {
    "lti13": _save_platform,
    "lti11": _save_consumer,
    "sis": _save_sis,
}


@router.post("/destinations", dependencies=[Depends(check_csrf)], response_model=None)
async def add_destination(request: Request, user: ConsoleUser = Depends(admin_user)) -> Response:
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items() if k != "csrf"}
    kind = form.pop("kind", "")
    saver = SAVERS.get(kind)
    if saver is None:
        raise PageError(404, "Unknown kind of destination.")
    rt = runtime_of(request)
    try:
        dest = await run_in_threadpool(saver, rt, user.tenant_id, form)
    except InvalidInput as exc:
        shown = {k: v for k, v in form.items() if "secret" not in k}
        return await run_in_threadpool(
            _page,
            request,
            user,
            status=422,
            form=shown,
            open_form=kind,
            error=problems_text(exc, FORM_LABELS),
        )
    except (Conflict, NotFound) as exc:
        shown = {k: v for k, v in form.items() if "secret" not in k}
        return await run_in_threadpool(
            _page, request, user, status=409, form=shown, open_form=kind, error=str(exc)
        )
    flash(request, "ok", f"Added {dest.name}. Press Check to prove it works.")
    return RedirectResponse("/console/destinations", status_code=303)


async def run_check(rt: Runtime, dest: Destination) -> list[ProbeStep]:
    """The destination's check end to end, as `destinations check` and the API run it
    (`services.destination_check`): its own steps, then a connected course's gradebook."""
    try:
        async with rt.client_for_request(dest) as client, rt.request_governor() as governor:
            steps = await destination_check.check_destination(
                rt.uow, rt.clock, dest.tenant_id, dest.id, client, governor
            )
        return [s.read_over(Reader.CONSOLE) for s in steps]
    except Exception as exc:  # the client could not be built from the settings
        log.warning("destination check of %s failed: %s", dest.id, exc)
        return [unreachable(exc)]


@router.post("/destinations/{destination_id}/check", dependencies=[Depends(check_csrf)])
async def check_destination(
    request: Request, destination_id: str, user: ConsoleUser = Depends(admin_user)
) -> HTMLResponse:
    rt = runtime_of(request)
    try:
        dest = await run_in_threadpool(
            destination_admin.get_destination, rt.uow, user.tenant_id, destination_id
        )
    except NotFound as exc:
        raise PageError(404, "No such destination.") from exc
    steps = await run_check(rt, dest)
    return await run_in_threadpool(
        _page, request, user, checked=dest.name, checked_id=dest.id, steps=steps
    )


@router.post("/destinations/{destination_id}/{what}", dependencies=[Depends(check_csrf)])
def pause_or_resume(
    request: Request,
    destination_id: str,
    what: str,
    back: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    rt = runtime_of(request)
    try:
        if what == "pause":
            d = destination_admin.pause(
                rt.uow, rt.clock, user.tenant_id, destination_id, actor=user.username
            )
            flash(request, "ok", f"{d.name} is paused: grades wait until you resume it.")
        elif what == "resume":
            d = destination_admin.resume(rt.uow, rt.clock, rt.waker, user.tenant_id, destination_id)
            flash(request, "ok", f"{d.name} is delivering again.")
        else:
            raise PageError(404, "Unknown action.")
    except NotFound as exc:
        raise PageError(404, "No such destination.") from exc
    # the dashboard's Resume button comes back to the dashboard
    to = "/console/dashboard" if back == "dashboard" else "/console/destinations"
    return RedirectResponse(to, status_code=303)
