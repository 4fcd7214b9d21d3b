"""SIS grade passback (OneRoster 1.2) for admins: connection, mapping, category alignment,
"Sync to SIS" selection, validation, "Post grades" and CSV export. Every route needs an API
key with the admin scope and only sees its own tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import Response
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from gradesync.adapters.destinations import oneroster_csv
from gradesync.answers.checks import step_out
from gradesync.answers.sis import (
    categories_out,
    checks_out,
    class_out,
    connection_out,
    post_out,
    roster_out,
    student_out,
)
from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput
from gradesync.domain.model import Destination
from gradesync.domain.passback import NAME_MAX_LENGTH_MOST
from gradesync.domain.remedies import Reader, RemedyProblem, for_reader
from gradesync.runtime import Runtime
from gradesync.services import sis as service
from gradesync.services import sis_export
from gradesync.services.destination import RemoteFailure
from gradesync.services.sis import SisDirectory
from gradesync.services.sis.shared_class import courses_sharing_class, shared_class_warning
from gradesync.web.api import preconditions
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import (
    NOT_BLANK,
    Bool,
    FullDate,
    InputModel,
    Whole,
    ZonedDateTime,
)

T = TypeVar("T")

# a problem with an id the URL gave (destination_id, course_id, ...) is located in the path
router = APIRouter(prefix="/sis", tags=["SIS passback (OneRoster)"], route_class=UrlIdsRoute)
admin = require_scope("admin")


def _name_limit(value: int) -> int:
    """A `name_max_length` from 1 to NAME_MAX_LENGTH_MOST, refused in the words the use case
    gives every reader, with how an API client takes the limit away (`clear`: null keeps it)."""
    for rule, wrong, said in (
        ("minimum", value < 1, "positive_integer"),
        ("maximum", value > NAME_MAX_LENGTH_MOST, "maximum"),
    ):
        if wrong:
            raise PydanticCustomError(rule, service.name_limit_said(said, value, Reader.API))
    return value


class SisProfileIn(InputModel):
    """How this SIS behaves where OneRoster leaves it open (docs/oneroster.md)."""

    name_max_length: (
        Annotated[
            int,
            Field(strict=True, json_schema_extra={"minimum": 1, "maximum": NAME_MAX_LENGTH_MOST}),
            Whole,
            AfterValidator(_name_limit),
        ]
        | None
    ) = Field(
        None,
        description="The longest line item title the SIS takes (at most "
        f"{NAME_MAX_LENGTH_MOST}, the longest activity title).",
    )
    due_date_required: Annotated[bool, Field(strict=True)] | None = Field(
        None, description="The SIS refuses a line item without a due date."
    )
    due_date_inside_term: Annotated[bool, Field(strict=True)] | None = Field(
        None, description="The SIS refuses a due date outside the class's term."
    )
    may_create_categories: Annotated[bool, Field(strict=True)] | None = Field(
        None, description="gradesync may create a missing category."
    )
    category_match: Literal["id", "name"] | None = Field(
        None, description="Activity groups match SIS categories by sourcedId or by title."
    )
    default_category: Annotated[str, Field(min_length=1, pattern=NOT_BLANK, strict=True)] | None = (
        Field(None, description="The category of activities without a group.")
    )
    concurrency: Annotated[int, Field(ge=1, le=64, strict=True), Whole] | None = Field(
        None, description="At most this many requests at once to this SIS."
    )


class ConnectionIn(InputModel):
    """Left out (or null), a value keeps what is set; a new connection is named after its id
    and uses REST."""

    name: str | None = Field(None, min_length=1)
    base_url: str | None = None
    token_url: str | None = Field(
        None,
        description="The SIS's OAuth 2 token URL; an empty string goes back to the default, "
        "`/ims/oneroster/oauth2/token` on the API's server.",
    )
    client_id: str | None = None
    client_secret: str | None = Field(None, description="Stored encrypted; never returned.")
    scopes: (
        list[Annotated[str, Field(pattern=r"^https://purl\.imsglobal\.org/spec/or/v1p2/scope/")]]
        | None
    ) = None
    profile: SisProfileIn | None = None
    file_based: Bool | None = None
    clear: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Optional settings to take back to their default: "
        f"{', '.join(service.CLEARABLE)} (a profile setting by its name). One also given "
        "a value is refused (`exclusive`).",
    )


class ClassIn(InputModel):
    class_id: str = Field(min_length=1)
    school_id: str | None = None
    term_start: FullDate | None = None
    term_end: FullDate | None = None
    section_id: str | None = None
    new_section: Bool = False  # a section no enrollment names yet, mapped on purpose


class StudentIn(InputModel):
    student_id: str = Field(min_length=1)


class AlignIn(InputModel):
    category_id: str = Field(min_length=1)
    course_id: str | None = None


class SelectionIn(InputModel):
    activity_ids: list[str] = Field(min_length=1, max_length=1000)
    selected: Bool = True
    hold: Bool = Field(
        default=False,
        description="Ticking only records the choice: the activities' grades (and any that "
        "come later) wait until Post grades names them. Without it, ticking sends at once.",
    )


class PostIn(InputModel):
    activity_ids: list[str] = Field(default_factory=list, max_length=1000)
    remaster: Bool = False


class ExportIn(InputModel):
    mode: Literal["bulk", "delta"] = "bulk"
    since: ZonedDateTime | None = Field(
        None,
        description="Where a delta starts (default: each course's last export); refused "
        "with a bulk export (`delta_only`), which holds every row.",
    )
    course_ids: list[str] = Field(default_factory=list)


def api_problem(p: FieldProblem, destination_id: str) -> FieldProblem:
    """A refused request's problem in the API's words: one whose remedy is held as a code
    (`RemedyProblem`, which knows its course and activity) made from it, any other reworded
    where it names a command."""
    if isinstance(p, RemedyProblem):
        return p.read_over(Reader.API)
    return replace(p, message=for_reader(p.rule, p.message, Reader.API, destination_id))


def _remote(failure: RemoteFailure, destination_id: str) -> HTTPException:
    """The SIS's refusal, its remedy in the API's words: made from its code where the
    adapter holds one (`RemoteFailure.remedy_for`), else reworded (`remedies.for_reader`)."""
    remedy = failure.remedy_for(Reader.API, destination_id)
    if remedy and failure.fix is None:
        remedy = for_reader(failure.code, remedy, Reader.API, destination_id)
    return HTTPException(
        status_code=502,
        detail={
            "code": failure.code,
            "class": failure.failure.value,
            "message": failure.message,
            "remedy": remedy,
        },
    )


async def _ask_sis(
    rt: Runtime, tenant_id: str, destination_id: str, fn: Callable[[SisDirectory], Awaitable[T]]
) -> T:
    async with rt.sis_directory(tenant_id, destination_id) as sis:
        try:
            return await fn(sis)
        except RemoteFailure as failure:
            raise _remote(failure, destination_id) from failure


def _change_mapping(
    fn: Callable[..., T], rt: Runtime, p: Principal, destination_id: str, **ids: str
) -> T:
    """A mapping use case called for the key's tenant, the running workers woken to send what
    it changed."""
    return fn(
        rt.uow,
        tenant_id=p.tenant_id,
        destination_id=destination_id,
        clock=rt.clock,
        waker=rt.waker,
        **ids,
    )


def _tagged(dest: Destination, response: Response) -> dict[str, Any]:
    out = connection_out(dest)
    response.headers["ETag"] = preconditions.etag(out["version"])
    return out


@router.get("/connections/{destination_id}")
def get_connection(
    destination_id: str,
    response: Response,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """A SIS connection's settings (never its secret) and their `version`, also sent as the
    `ETag` header: give it back in `If-Match` to `PUT` a change only while no other change
    came between."""
    return _tagged(service.get_connection(rt.uow, p.tenant_id, destination_id), response)


@router.put("/connections/{destination_id}")
def put_connection(
    destination_id: str,
    body: ConnectionIn,
    response: Response,
    if_match: str | None = Header(
        None,
        alias="If-Match",
        description="The `ETag` of `GET /sis/connections/{destination_id}` the change is made "
        "from (or `*`: the connection exists): settings changed since answer `412` and "
        "nothing changes; a tag holding no settings version (64 lowercase hexadecimal "
        "characters) is refused `422` `etag`. Optional: without it the change is made "
        "whatever was changed meanwhile.",
    ),
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Add or update a SIS connection. Left-out (or null) values keep what was set, the kind
    (`file_based`) and the name included; a new connection is named after its id and uses
    REST unless `file_based` is true. `clear` takes optional settings back to their default
    (`"token_url": ""` does too, for the token URL). With `If-Match` (the `ETag` a `GET`
    answered), settings another change reached first answer `412` `changed`, and nothing
    changes. Answers the settings as `GET` does, with their new `ETag`."""
    versions = preconditions.if_match(if_match)
    preconditions.versions_of(versions, lambda tag: service.version_problem(tag, Reader.API))
    try:
        dest = service.add_connection(
            rt.uow,
            rt.clock,
            tenant_id=p.tenant_id,
            destination_id=destination_id,
            name=body.name,
            base_url=body.base_url,
            client_id=body.client_id,
            client_secret=body.client_secret,
            token_url=body.token_url,
            scopes=body.scopes,
            profile=body.profile.model_dump(exclude_unset=True, exclude_none=True)
            if body.profile
            else {},
            file_based=body.file_based,
            guard=rt.outbound,
            clear=body.clear,
            version=versions,
            reader=Reader.API,
        )
    except Conflict as exc:
        if versions is None or exc.rule != "changed":
            raise
        raise preconditions.stale(exc) from exc
    return _tagged(dest, response)


@router.post("/connections/{destination_id}/check")
async def check_connection(
    destination_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """Token, scopes and category listing (a file-based SIS: its category alignment), each
    passed or failed with evidence, a `code` saying what it found and a remedy in the API's
    words."""
    steps = await _ask_sis(rt, p.tenant_id, destination_id, lambda c: c.check())
    return [step_out(s.read_over(Reader.API)) for s in steps]


@router.put("/connections/{destination_id}/classes/{course_id}")
async def put_class(
    destination_id: str,
    course_id: str,
    body: ClassIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Map a course (or, with section_id, one of its sections) to a SIS class sourcedId. A
    SIS with a REST API is asked first: a class it cannot locate is a 422 `class_unknown`,
    and nothing changes. Other courses of the tenant already mapped to the class are named
    in `warnings` (allowed: each course gets line items of its own)."""
    link = await rt.map_sis_class(
        p.tenant_id,
        destination_id,
        course_id,
        body.class_id,
        school_id=body.school_id,
        term_start=body.term_start,
        term_end=body.term_end,
        section_id=body.section_id,
        new_section=body.new_section,
        waker=rt.waker,
    )
    sharing = await asyncio.to_thread(
        courses_sharing_class, rt.uow, p.tenant_id, destination_id, course_id, body.class_id
    )
    return class_out(link, shared_class_warning(body.class_id, sharing))


# `:path`: a section id may hold '/' (`sec%2Fb`); no other route lies under `.../sections/`
@router.delete("/connections/{destination_id}/classes/{course_id}/sections/{section_id:path}")
def delete_section(
    destination_id: str,
    course_id: str,
    section_id: str,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Remove a section's own SIS class: its learners' results go to the course's class
    again, and are sent there at once. Answers the course's mapping now. A section with no
    class of its own is a 404 `section mapping not found`."""
    return class_out(
        _change_mapping(
            service.unmap_section, rt, p, destination_id, course_id=course_id, section_id=section_id
        )
    )


@router.put("/connections/{destination_id}/students/{person_id}")
def put_student(
    destination_id: str,
    person_id: str,
    body: StudentIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, str]:
    return student_out(
        _change_mapping(
            service.map_student,
            rt,
            p,
            destination_id,
            person_id=person_id,
            student_id=body.student_id,
        )
    )


@router.post("/connections/{destination_id}/courses/{course_id}/students")
def map_course_students(
    destination_id: str,
    course_id: str,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, list[str]]:
    """Link every learner of the course to their SIS student (mapping, else sis_id)."""
    report = _change_mapping(
        service.map_course_students, rt, p, destination_id, course_id=course_id
    )
    return roster_out(report)


# `:path`: a group may hold a `/` (`Quizzes/Tests`), as given or percent-encoded
@router.put("/connections/{destination_id}/alignments/{group:path}")
async def put_alignment(
    destination_id: str,
    group: str,
    body: AlignIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, str]:
    """Align an activity group to a SIS category (for the connection, or one course). A SIS
    with a REST API is asked first: a category it does not have is a 422
    `category_unknown`, and nothing changes."""
    return await rt.align_sis_categories(
        p.tenant_id, destination_id, {group: body.category_id}, course_id=body.course_id
    )


@router.delete("/connections/{destination_id}/alignments/{group:path}")
def delete_alignment(
    destination_id: str,
    group: str,
    course_id: str | None = None,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, str]:
    """Remove a group's alignment (the course's own, with `course_id`); answers the map now
    set. A group with no alignment there is a 404 `alignment not found`."""
    return service.align_category(
        rt.uow,
        rt.clock,
        tenant_id=p.tenant_id,
        destination_id=destination_id,
        group=group,
        category_id=None,
        course_id=course_id,
        removal_must_exist=True,
    )


@router.get("/connections/{destination_id}/categories")
async def categories(
    destination_id: str,
    course_id: str | None = None,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The SIS's categories and, for a course, how each of its groups aligns."""

    async def ask(client: SisDirectory) -> dict[str, Any]:
        cats = await client.categories(refresh=True)
        checks = (
            await service.check_categories(
                rt.uow,
                client,
                tenant_id=p.tenant_id,
                destination_id=destination_id,
                course_id=course_id,
            )
            if course_id
            else []
        )
        return categories_out(cats, checks)

    result: dict[str, Any] = await _ask_sis(rt, p.tenant_id, destination_id, ask)
    return result


@router.put("/connections/{destination_id}/selection")
async def put_selection(
    destination_id: str,
    body: SelectionIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """Tick or clear "Sync to SIS"; ticking an activity that fails validation is a 422 naming
    each problem, and nothing changes. With `hold`, ticking and posting are two steps: the
    grades wait for a post naming the activity."""
    try:
        checks = await rt.tick_sis_activities(
            p.tenant_id,
            destination_id,
            body.activity_ids,
            selected=body.selected,
            hold=body.hold,
            waker=rt.waker,
        )
    except InvalidInput as exc:  # each problem's remedy in the API's words
        raise InvalidInput([api_problem(p, destination_id) for p in exc.problems]) from exc
    return checks_out(checks, destination_id)


@router.get("/connections/{destination_id}/validation")
def get_validation(
    destination_id: str,
    course_id: str | None = None,
    activity_id: list[str] = Query(default=[]),
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    return checks_out(
        service.validate(
            rt.uow,
            tenant_id=p.tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            activity_ids=activity_id,
        ),
        destination_id,
    )


@router.post("/connections/{destination_id}/courses/{course_id}/post", status_code=202)
async def post_grades(
    destination_id: str,
    course_id: str,
    body: PostIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """ "Post grades": a run over the selected activities; follow it at /api/v1/runs/{id}."""
    if rt.waker is None:
        raise HTTPException(status_code=503, detail="no worker is running to post grades")
    result = await rt.post_sis_grades(
        p.tenant_id,
        destination_id,
        course_id,
        actor=p.actor,
        activity_ids=body.activity_ids,
        remaster=body.remaster,
        waker=rt.waker,
    )
    if result.run is None:
        # nothing went: a clear refusal (as the CLI's and the console's), not a 202
        refused = [c.read_over(Reader.API, destination_id) for c in result.refused]
        raise service.nothing_to_post(
            replace(result, refused=refused),
            "tick activities (PUT .../selection) and fix what .../validation shows.",
        )
    return await asyncio.to_thread(post_out, rt, p.tenant_id, result, destination_id)


@router.post("/connections/{destination_id}/exports")
async def export_csv(
    destination_id: str,
    body: ExportIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> Response:
    """Bring a file-based SIS up to date (a sync run), then its OneRoster 1.2 CSV set as a zip
    (manifest, lineItems, results)."""
    export = await sis_export.export_csv(
        rt.uow,
        rt.clock,
        rt.waker,
        rt.finish_run,
        tenant_id=p.tenant_id,
        destination_id=destination_id,
        actor=p.actor,
        mode=sis_export.ExportMode(body.mode),
        since=body.since,
        course_ids=body.course_ids,
    )
    stamp = export.exported_at.strftime("%Y%m%dT%H%M%SZ")
    return Response(
        oneroster_csv.zipped(export.files()),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="oneroster-{body.mode}-{stamp}.zip"',
            "X-Left-Out": str(len(export.refused)),
        },
    )
