"""The settings of an existing SIS connection (OneRoster 1.2), as `PUT /api/v1/sis/connections/
{id}` and `gradesync sis add` change them: name, kind, base and token URLs, client id and
secret, scopes and the profile. It calls the same use case (services.sis.add_connection),
which checks every value: a refusal shows the form again, as typed, with each field named,
and changes nothing.

The secret is write-only: never shown back, and left empty it keeps the stored one. An
optional setting left empty (a profile choice on "Default") goes back to its default, as the
API's `clear` takes it."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput
from gradesync.domain.model import ConsoleUser, Destination, DestinationKind
from gradesync.domain.passback import SIS_CONCURRENCY, profile_from_config
from gradesync.domain.remedies import Reader
from gradesync.services import sis as service
from gradesync.web.console.common import (
    admin_user,
    check_csrf,
    flash,
    page_labels,
    problems_text,
    render,
    runtime_of,
)
from gradesync.web.console.sis import sis_of

router = APIRouter(prefix="/sis")

# The form's labels, for its refusals (the use case names fields as the API does: a profile
# setting as config.NAME).
LABELS = {
    "name": "Name",
    "kind": "Kind",
    "base_url": "OneRoster base URL",
    "token_url": "OAuth 2 token URL",
    "client_id": "Client id",
    "client_secret": "Client secret",
    "scopes": "Scopes",
    "name_max_length": "Longest line item title",
    "due_date_required": "Due date required",
    "due_date_inside_term": "Due date inside the term",
    "may_create_categories": "May create categories",
    "category_match": "Match categories by",
    "default_category": "Default category",
    "concurrency": "Requests at once",
    "version": "Settings version",
}
LABELS |= {f"config.{k}": v for k, v in LABELS.items()}
page_labels(__name__, LABELS)  # for `form_refused` too
NUMBERS = ("name_max_length", "concurrency")
CHOICES = ("due_date_required", "due_date_inside_term", "may_create_categories")
# what each choice of the form may send ("" is Default); anything else was not offered
OFFERED = {
    "kind": ("rest", "files"),
    **{key: ("", "yes", "no") for key in CHOICES},
    "category_match": ("", "id", "name"),
}


def _choice_problems(typed: dict[str, str]) -> list[FieldProblem]:
    """A choice the form never offered (an edited page): named, as any other refusal."""
    return [
        FieldProblem(
            key,
            "one_of",
            "Not a choice the form offers: "
            + " or ".join(repr(o) if o else "Default" for o in offered)
            + ".",
        )
        for key, offered in OFFERED.items()
        if typed[key] not in offered
    ]


def _version_problems(version: str) -> list[FieldProblem]:
    """The version the form was made from, when it cannot be one (an edited page, a cut
    copy): bad input, named with the form's other problems, not read as a change come
    between (409), which it is not."""
    malformed = service.version_problem(version, Reader.CONSOLE)
    return [malformed] if malformed is not None else []


def _form_of(dest: Destination) -> dict[str, str]:
    """The connection's settings as the form's fields hold them (no secret)."""
    config = dest.config
    form = {
        "name": dest.name,
        "kind": "files" if dest.kind is DestinationKind.ONEROSTER_CSV else "rest",
        "base_url": str(config.get("base_url") or ""),
        "token_url": str(config.get("token_url") or ""),
        "client_id": str(config.get("client_id") or ""),
        "scopes": "\n".join(str(s) for s in config.get("scopes") or ()),
    }
    for key in service.PROFILE_KEYS:
        value = config.get(key)
        if key in CHOICES:
            form[key] = "" if value is None else ("yes" if value else "no")
        elif key in NUMBERS:
            form[key] = "" if value is None else str(value)
        else:
            form[key] = str(value or "")
    return form


def _defaults() -> dict[str, str]:
    """What each optional setting is when left to its default, in the form's words."""
    p = profile_from_config({})
    words = {True: "yes", False: "no"}
    return {
        "due_date_required": words[p.due_date_required],
        "due_date_inside_term": words[p.due_date_inside_term],
        "may_create_categories": words[p.may_create_categories],
        "category_match": p.category_match.value,
        "concurrency": str(SIS_CONCURRENCY),
        "scopes": ", ".join(service.DEFAULT_SCOPES),
    }


def _page(
    request: Request,
    user: ConsoleUser,
    dest: Destination,
    form: dict[str, str],
    *,
    status: int = 200,
    error: str = "",
) -> HTMLResponse:
    return render(
        request,
        "console/sis_edit.html",
        user,
        status=status,
        nav="sis",
        d=dest,
        form=form,
        defaults=_defaults(),
        has_secret=bool(dest.secret.get("client_secret")),
        labels=LABELS,
        error=error,
        version=service.settings_version(dest),  # what this form is made from
    )


@router.get("/{destination_id}/edit", response_class=HTMLResponse)
def edit_page(
    request: Request, destination_id: str, user: ConsoleUser = Depends(admin_user)
) -> HTMLResponse:
    dest = sis_of(runtime_of(request), user.tenant_id, destination_id)
    return _page(request, user, dest, _form_of(dest))


def _whole(text: str) -> int | str:
    """A whole number as typed; anything else as it is, for the use case to refuse by its
    rule (the same refusal the API's stored values get)."""
    return int(text) if re.fullmatch(r"[+-]?\d{1,100}", text) else text


def _setting(key: str, typed: str) -> Any:
    """A profile setting as the use case takes it; None when left empty (its default)."""
    if not typed:
        return None
    if key in NUMBERS:
        return _whole(typed)
    if key in CHOICES:
        return typed == "yes"
    return typed


# the form's fields shown back as typed: all but the secret and the version it is made from
TYPED = ("name", "kind", "base_url", "token_url", "client_id", "scopes", *service.PROFILE_KEYS)


async def _posted(request: Request) -> dict[str, str]:
    """The form's fields as posted (TYPED, the secret and the version); one not sent is
    empty, as is a file in the place of one (the form sends none). The choices as text too:
    a value never offered is named on the form, not a JSON 422."""
    form = await request.form()
    return {
        key: value if isinstance(value := form.get(key, ""), str) else ""
        for key in (*TYPED, "client_secret", "version")
    }


@router.post("/{destination_id}/edit", dependencies=[Depends(check_csrf)], response_model=None)
def save_settings(
    request: Request,
    destination_id: str,
    user: ConsoleUser = Depends(admin_user),
    posted: dict[str, str] = Depends(_posted),
) -> Response:
    rt = runtime_of(request)
    dest = sis_of(rt, user.tenant_id, destination_id)
    typed = {key: posted[key] for key in TYPED}
    typed["kind"] = typed["kind"] or _form_of(dest)["kind"]  # not sent: the kind stays
    optional = {k: typed[k].strip() for k in service.CLEARABLE}
    settings = {key: _setting(key, optional[key]) for key in service.PROFILE_KEYS}
    profile = {key: value for key, value in settings.items() if value is not None}
    scope_list = [s for s in re.split(r"[,\s]+", optional["scopes"]) if s]
    try:
        if problems := _version_problems(posted["version"]) + _choice_problems(typed):
            raise InvalidInput(problems)
        saved = service.add_connection(
            rt.uow,
            rt.clock,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            name=typed["name"].strip(),
            base_url=typed["base_url"].strip(),
            client_id=typed["client_id"].strip(),
            client_secret=posted["client_secret"] or None,  # empty keeps the stored secret
            token_url=optional["token_url"] or None,
            scopes=scope_list or None,
            profile=profile,
            file_based=typed["kind"] == "files",
            guard=rt.outbound,
            # an optional setting left empty goes back to its default
            clear=[k for k, v in optional.items() if not v],
            version=posted["version"],
            reader=Reader.CONSOLE,  # a limit is taken away by leaving its box empty
        )
    except InvalidInput as exc:
        error = f"Nothing was changed. {problems_text(exc, LABELS)}"
        return _page(request, user, dest, typed, status=422, error=error)
    except Conflict as exc:
        if exc.rule != "changed":
            raise
        # another admin saved meanwhile: the form again as it is now, to make the change anew
        now = sis_of(rt, user.tenant_id, destination_id)
        error = (
            "Nothing was changed: these settings were changed since you opened them. The form "
            "now shows them as they are; make your change again."
        )
        return _page(request, user, now, _form_of(now), status=409, error=error)
    saved_words = f"Saved the settings of {saved.name}. Press Check connection to prove they work."
    flash(request, "ok", saved_words)
    return RedirectResponse("/console/sis", status_code=303)
