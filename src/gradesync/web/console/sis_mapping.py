"""SIS passback forms of a course that only admins use: the course's SIS class, its learners'
SIS students, and each activity group aligned to one of the SIS's categories. Each change is
said on the course's SIS page (or each problem, naming the field and the rule)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from anyio import from_thread
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gradesync.domain.diagnosis.checks import plural
from gradesync.domain.errors import GradesyncError, InvalidInput
from gradesync.domain.model import ConsoleUser
from gradesync.services import sis as service
from gradesync.web.console.common import (
    admin_user,
    check_csrf,
    confirm_page,
    flash,
    page_labels,
    problems_text,
    runtime_of,
)
from gradesync.web.console.sis import page_url, sis_of

router = APIRouter(prefix="/sis")


# the course page's labels, for its refusals
FORM_LABELS = {
    "class_id": "SIS class sourcedId",
    "school_id": "SIS school sourcedId",
    "term_start": "Term starts",
    "term_end": "Term ends",
    "student_id": "SIS student sourcedId",
    "category_id": "SIS category",
    "section_id": "Section",
}
page_labels(__name__, FORM_LABELS)  # for `form_refused` too


def _admin_form(
    request: Request,
    destination_id: str,
    course_id: str,
    user: ConsoleUser,
    done: str | Callable[[Any], str],
    fn: Any,
) -> RedirectResponse:
    """Run an admin's change; say what happened (or each problem) on the course's SIS page.
    `done` is the message, or makes it from what `fn` returned."""
    try:
        result = fn(runtime_of(request))
    except InvalidInput as exc:
        flash(request, "error", problems_text(exc, FORM_LABELS))
    except GradesyncError as exc:
        flash(request, "error", str(exc))
    else:
        flash(request, "ok", done(result) if callable(done) else done)
    return RedirectResponse(page_url(destination_id, course_id), status_code=303)


@router.post("/{destination_id}/courses/{course_id}/class", dependencies=[Depends(check_csrf)])
def map_class(
    request: Request,
    destination_id: str,
    course_id: str,
    class_id: str = Form(""),
    school_id: str = Form(""),
    term_start: str = Form(""),
    term_end: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        f"The course now posts to SIS class {class_id.strip()}.",
        lambda rt: from_thread.run(
            functools.partial(
                rt.map_sis_class,
                user.tenant_id,
                destination_id,
                course_id,
                class_id.strip(),
                school_id=school_id.strip() or None,
                term_start=term_start.strip() or None,
                term_end=term_end.strip() or None,
                waker=rt.waker or rt.remote_waker(),
            )
        ),
    )


@router.post(
    "/{destination_id}/courses/{course_id}/sections/unmap",
    dependencies=[Depends(check_csrf)],
    response_model=None,
)
def unmap_section(
    request: Request,
    destination_id: str,
    course_id: str,
    section_id: str = Form(""),
    confirm: Literal["yes"] | None = Form(None),
    user: ConsoleUser = Depends(admin_user),
) -> Response:
    """Remove a section's own SIS class (as `gradesync sis unmap-section`): asked first, since
    its learners' results then go to the course's class, and the section's class gets no more
    of them."""
    if confirm != "yes":
        rt = runtime_of(request)
        dest = sis_of(rt, user.tenant_id, destination_id)
        with rt.uow() as uow:
            link = uow.links.course(user.tenant_id, destination_id, course_id)
        own = ((link.data.get("sections") or {}) if link else {}).get(section_id)
        if link is None or own is None:
            flash(request, "error", f"Section {section_id!r} has no SIS class of its own.")
            return RedirectResponse(page_url(destination_id, course_id), status_code=303)
        base = page_url(destination_id, course_id)
        return _confirm_unmap(request, user, base, dest.name, link.remote_id, section_id, own)
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        lambda link: f"Section {section_id} now posts to the course's SIS class {link.remote_id}.",
        lambda rt: service.unmap_section(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            section_id=section_id,
            clock=rt.clock,
            waker=rt.waker or rt.remote_waker(),
        ),
    )


def _confirm_unmap(
    request: Request,
    user: ConsoleUser,
    base: str,
    sis: str,
    course_class: str,
    section: str,
    own: str,
) -> HTMLResponse:
    return confirm_page(
        request,
        user,
        nav="sis",
        title=f"Unmap section {section} from SIS class {own}?",
        said=[
            f"The learners of section {section} then post to the course's SIS class "
            f"{course_class} at {sis}, and their grades in the activities ticked for the SIS "
            "are sent there at once.",
            f"What class {own} already holds stays there: gradesync deletes no grade it sent.",
        ],
        action=f"{base}/sections/unmap",
        yes="Yes, unmap the section",
        cancel=base,
        fields={"section_id": section},
    )


@router.post("/{destination_id}/courses/{course_id}/students", dependencies=[Depends(check_csrf)])
def map_students(
    request: Request, destination_id: str, course_id: str, user: ConsoleUser = Depends(admin_user)
) -> RedirectResponse:
    """Link every learner to their SIS student (an explicit mapping, else their SIS id)."""
    rt = runtime_of(request)
    try:
        report = service.map_course_students(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            clock=rt.clock,
            waker=rt.waker or rt.remote_waker(),
        )
    except InvalidInput as exc:
        flash(request, "error", problems_text(exc, FORM_LABELS))
    else:
        text = f"{plural(len(report.mapped), 'learner')} linked to their SIS student."
        if report.unmapped:
            text += f" No SIS id for {len(report.unmapped)}: give each one below."
        flash(request, "ok", text)
    return RedirectResponse(page_url(destination_id, course_id), status_code=303)


@router.post(
    "/{destination_id}/courses/{course_id}/students/{person_id}",
    dependencies=[Depends(check_csrf)],
)
def map_student(
    request: Request,
    destination_id: str,
    course_id: str,
    person_id: str,
    student_id: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        f"{person_id} is SIS student {student_id.strip()}.",
        lambda rt: service.map_student(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            person_id=person_id,
            student_id=student_id.strip(),
            clock=rt.clock,
            waker=rt.waker or rt.remote_waker(),
        ),
    )


@router.post("/{destination_id}/courses/{course_id}/align", dependencies=[Depends(check_csrf)])
def align(
    request: Request,
    destination_id: str,
    course_id: str,
    group: str = Form(""),
    category_id: str = Form(""),
    scope: Literal["connection", "course"] = Form("connection"),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    """Align an activity group to one of the SIS's categories (empty: remove the alignment),
    for every course of the connection or this course only."""
    cat = category_id.strip() or None
    for_course = scope == "course"
    where = "this course" if for_course else "every course"

    def change(rt: Any) -> str | None:
        """Align; for every course, also the category this course keeps by its own
        alignment (which wins), if any."""
        from_thread.run(
            functools.partial(
                rt.align_sis_categories,
                user.tenant_id,
                destination_id,
                {group: cat},
                course_id=course_id if for_course else None,
            )
        )
        if for_course:
            return None
        with rt.uow() as uow:
            link = uow.links.course(user.tenant_id, destination_id, course_id)
        return ((link.data.get("category_map") or {}) if link else {}).get(group)

    def done(own: str | None) -> str:
        said = (
            f"Group {group!r} now goes to SIS category {cat} ({where})."
            if cat
            else f"Group {group!r} is no longer aligned ({where})."
        )
        if own:
            said += f" This course keeps its own alignment, to category {own}."
        return said

    return _admin_form(request, destination_id, course_id, user, done, change)
