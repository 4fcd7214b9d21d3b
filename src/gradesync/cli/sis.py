"""`gradesync sis ...`: OneRoster 1.2 grade passback to a student information system."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from gradesync.cli._common import (
    EXIT_FAILED,
    JSON_OUT,
    TENANT,
    as_options,
    bad_input,
    console,
    err,
    fail,
    guarded,
    id_table,
    print_json,
    print_table,
    problem,
    runtime,
    setting_text,
    will_write,
)
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import DestinationKind, SyncRun
from gradesync.domain.remedies import Reader
from gradesync.services import sis as service
from gradesync.services import sis_export
from gradesync.services.destination import RemoteFailure

if TYPE_CHECKING:
    from gradesync.answers.runs import RunOut
    from gradesync.runtime import Runtime

app = typer.Typer(
    help="SIS grade passback (OneRoster 1.2): connect, map classes and students, align "
    "categories, select and validate activities, post grades, export CSV.",
    no_args_is_help=True,
)
T = TypeVar("T")


def _run(
    fn: Callable[[Runtime], T],
    options: Mapping[str, str] | None = None,
    named: Collection[str] = (),
) -> T:
    """Run `fn` with a runtime, reporting errors (and a SIS's refusal) as every command does:
    a problem named by the option typed (`options`, see `guarded`), an unknown id in a field
    of `named` not found."""
    with runtime() as rt:
        return guarded(lambda: fn(rt), options, named)


async def _check(rt: Runtime, tenant: str, destination_id: str) -> Sequence[ProbeStep]:
    async with rt.sis_directory(tenant, destination_id) as client:
        return await client.check()


# the use cases' fields as the options (or arguments) typed, to name a bad one as typed
ADD_OPTIONS = {
    "destination_id": "DESTINATION_ID",
    "name": "--name",
    "base_url": "--base-url",
    "token_url": "--token-url",
    "client_id": "--client-id",
    "client_secret": "--client-secret",
    "scopes": "--scope",
    **{f"config.{k}": "--" + k.replace("_", "-") for k in service.PROFILE_KEYS},
    "clear": "--clear",
    "version": "--expect-version",
}
MAP_CLASS_OPTIONS = {
    "course_id": "COURSE_ID",
    "class_id": "CLASS_ID",
    "school_id": "--school",
    "term_start": "--term-start",
    "term_end": "--term-end",
    "section_id": "--section",
    "new_section": "--new-section",
    "destination_id": "DESTINATION_ID",
}
EXPORT_OPTIONS = {
    "destination_id": "DESTINATION_ID",
    "course_ids": "--course",
    "since": "--since",
    "out": "--out",
    "mode": "--delta",
}


@app.command("add")
def add(
    destination_id: str = typer.Argument(..., help="Id of the SIS connection, e.g. 'sis'."),
    tenant: str = TENANT,
    name: str | None = typer.Option(
        None, help="Display name (default: the current one, or the id for a new connection)."
    ),
    base_url: str | None = typer.Option(None, help="OneRoster base URL (server root or .../v1p2)."),
    token_url: str | None = typer.Option(
        None, help="OAuth 2 token URL (default: next to the API)."
    ),
    default_token_url: bool = typer.Option(
        False, "--default-token-url", help="Back to the default token URL, next to the API."
    ),
    client_id: str | None = typer.Option(None, help="OAuth 2 client id."),
    client_secret: str | None = typer.Option(
        None,
        envvar="GRADESYNC_SIS_CLIENT_SECRET",
        show_default=False,
        help="OAuth 2 client secret (or GRADESYNC_SIS_CLIENT_SECRET); stored encrypted.",
    ),
    scope: list[str] = typer.Option(
        [], help="Scope to ask for (repeatable; default readonly+createput)."
    ),
    name_max_length: int | None = typer.Option(
        None, help="Longest line item title the SIS takes (1-1024)."
    ),
    due_date_required: bool | None = typer.Option(
        None,
        "--due-date-required/--due-date-optional",
        help="Refuse an activity without a due date, or send the term's last day (default: "
        "required).",
    ),
    due_date_inside_term: bool | None = typer.Option(
        None,
        "--due-date-inside-term/--due-date-anywhere",
        help="Whether a due date must fall inside the class's term (default: anywhere).",
    ),
    may_create_categories: bool | None = typer.Option(
        None,
        "--may-create-categories/--no-create-categories",
        help="Whether gradesync may create a category the SIS does not have (default: no).",
    ),
    category_match: str | None = typer.Option(None, help="Align groups by 'id' or by 'name'."),
    default_category: str | None = typer.Option(
        None, help="Group used for activities without one."
    ),
    concurrency: int | None = typer.Option(None, help="Requests in flight at once (1-64)."),
    file_based: bool | None = typer.Option(
        None,
        "--file-based/--rest",
        help="A SIS that imports CSV files only, or one with a OneRoster REST API (default: "
        "as it is, or REST for a new connection).",
    ),
    clear: list[str] = typer.Option(
        [],
        "--clear",
        metavar="SETTING",
        help="Take an optional setting back to its default (repeatable): "
        + ", ".join(s.replace("_", "-") for s in service.CLEARABLE)
        + ".",
    ),
    check: bool = typer.Option(True, "--check/--no-check", help="Get a token and list categories."),
    expect_version: str | None = typer.Option(
        None,
        "--expect-version",
        metavar="VERSION",
        help="Change the settings only if they are still at this version (as `sis show` "
        "printed it, or the API's ETag in its quotes): a change made meanwhile is refused "
        "(exit 4) and nothing changes.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Add or update a SIS connection (values left out keep what was set; --clear takes an
    optional one back to its default). Exits 1 when the connection check fails, 4 when
    --expect-version is not the version stored."""
    if token_url is not None and default_token_url:
        raise bad_input(
            problem("--token-url", "one_of", "Give --token-url or --default-token-url, not both.")
        )
    if default_token_url:
        token_url = ""  # the use case's word for the default
    version = _expected_version(expect_version)
    profile = service.given_profile(
        name_max_length=name_max_length,
        due_date_required=due_date_required,
        due_date_inside_term=due_date_inside_term,
        may_create_categories=may_create_categories,
        category_match=category_match,
        default_category=default_category,
        concurrency=concurrency,
    )

    def go(rt: Runtime) -> tuple[Any, Sequence[ProbeStep] | None]:
        dest = _add(rt)
        if not as_json:
            console.print(f"SIS connection [bold]{dest.id}[/bold] saved ({dest.kind.value})")
            # a line of its own, never wrapped: copied whole for --expect-version
            saved = service.settings_version(dest)
            console.print(f"version: {saved}", highlight=False, soft_wrap=True)
        steps = None
        if check and dest.kind is DestinationKind.ONEROSTER_REST:
            steps = asyncio.run(_check(rt, tenant, dest.id))
        return dest, steps

    def _add(rt: Runtime) -> Any:
        return service.add_connection(
            rt.uow,
            rt.clock,
            tenant_id=tenant,
            destination_id=destination_id,
            name=name,
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            token_url=token_url,
            scopes=scope or None,
            profile=profile,
            file_based=file_based,
            guard=rt.outbound,
            clear=[c.strip().replace("-", "_") for c in clear],  # as typed, or as the API
            spelled=lambda setting: setting.replace("_", "-"),  # named as --clear takes them
            version=version,
            reader=Reader.CLI,
        )

    dest, steps = _run(go, ADD_OPTIONS)
    ok = steps is None or all(s.passed for s in steps)
    if as_json:
        from gradesync.answers.checks import step_out  # the API's answer shape

        print_json(
            {
                "id": dest.id,
                "tenant": tenant,
                "name": dest.name,
                "kind": dest.kind.value,
                "version": service.settings_version(dest),
                "ok": ok,
                "checks": None if steps is None else [step_out(s) for s in steps],
            }
        )
    else:
        for step in steps or ():
            mark = "[green]ok[/green]" if step.passed else "[red]failed[/red]"
            console.print(
                f"  {mark} {escape(step.name)}: {escape(step.evidence)}"
                + (f" -> {escape(step.remedy)}" if step.remedy else "")
            )
    if not ok:
        raise typer.Exit(EXIT_FAILED)  # saved, but not working: scripts must not go on


def _expected_version(given: str | None) -> str | None:
    """--expect-version as `sis show` prints it, or as the API's ETag (in double quotes,
    copied from a response): the version either way. Anything else (a typo, a cut copy, a
    weak tag `W/"..."`) is refused as malformed, as the API's If-Match refuses a malformed
    header, not read as another version (which would say the settings changed)."""
    if given is None:
        return None
    version = given.strip()
    if len(version) >= 2 and version[0] == version[-1] == '"':
        version = version[1:-1]  # the ETag's quotes
    version = version.lower()  # hexadecimal either case: a version is written lower-case
    if (malformed := service.version_problem(version, Reader.CLI, given)) is not None:
        raise bad_input(*as_options([malformed], ADD_OPTIONS))
    return version


@app.command("show")
def show(destination_id: str, tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """A SIS connection's settings (never its secret) and their version: give it to `sis add
    --expect-version` so a change made meanwhile by someone else is not overwritten."""
    from gradesync.answers.sis import connection_out

    dest = _run(
        lambda rt: service.get_connection(rt.uow, tenant, destination_id),
        {"destination_id": "DESTINATION_ID"},
    )
    shown = connection_out(dest)  # as GET /sis/connections/{id}
    if as_json:
        print_json(shown)
        return
    console.print(f"[bold]{escape(dest.name)}[/bold] ({dest.id}, {dest.kind.value})")
    for key, value in sorted(dest.config.items()):
        said = escape(setting_text(value))  # one line each, however long: a URL stays whole
        console.print(f"  {key.replace('_', '-')}: {said}", highlight=False, soft_wrap=True)
    stored = "stored" if dest.secret.get("client_secret") else "none"
    console.print(f"  client-secret: {stored}", highlight=False)
    console.print(f"version: {shown['version']}", highlight=False)


@app.command("map-class")
def map_class(
    destination_id: str,
    course_id: str,
    class_id: str = typer.Argument(..., help="SIS class sourcedId."),
    tenant: str = TENANT,
    school: str | None = typer.Option(None, help="SIS school (org) sourcedId of the class."),
    term_start: str | None = typer.Option(None, help="First day of the class's term (YYYY-MM-DD)."),
    term_end: str | None = typer.Option(None, help="Last day of the class's term (YYYY-MM-DD)."),
    section: str | None = typer.Option(None, help="Map this section of the course instead."),
    new_section: bool = typer.Option(
        False,
        "--new-section",
        help="With --section: a section none of the course's enrollments names yet (its "
        "learners are to come); without it such a section is refused as a likely typo.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Map a course (or one of its sections) to a SIS class."""
    from gradesync.answers.sis import class_out
    from gradesync.services.sis.shared_class import courses_sharing_class, shared_class_warning

    def go(rt: Runtime) -> Any:
        link = asyncio.run(
            rt.map_sis_class(
                tenant,
                destination_id,
                course_id,
                class_id,
                school_id=school,
                term_start=term_start,
                term_end=term_end,
                section_id=section,
                new_section=new_section,
                waker=rt.waker or rt.remote_waker(),
            )
        )
        sharing = courses_sharing_class(rt.uow, tenant, destination_id, course_id, class_id)
        return link, shared_class_warning(class_id, sharing)

    link, warning = _run(go, MAP_CLASS_OPTIONS)
    if warning:  # on stderr: stdout holds the result only
        err.print(f"warning: {escape(warning)}")
    if as_json:
        print_json(class_out(link, warning))  # as PUT .../classes/{course_id}
        return
    what = f"section {section} of {course_id}" if section else course_id
    console.print(f"{what} -> class {class_id} (school {link.data.get('school')})")


def _change_mapping(
    fn: Callable[..., T],
    tenant: str,
    destination_id: str,
    as_json: bool,
    out: Callable[[T], Mapping[str, Any]],
    said: Callable[[T], str],
    options: Mapping[str, str] | None = None,
    **ids: str,
) -> None:
    """A mapping use case (`fn`) called as every command calls it (workers woken to send
    what it changed), printed as its API route answers (`out`) or in words (`said`)."""
    link = _run(
        lambda rt: fn(
            rt.uow,
            tenant_id=tenant,
            destination_id=destination_id,
            clock=rt.clock,
            waker=rt.waker or rt.remote_waker(),
            **ids,
        ),
        options,
    )
    if as_json:
        print_json(out(link))
        return
    console.print(said(link))


@app.command("unmap-section")
def unmap_section(
    destination_id: str,
    course_id: str,
    section_id: str = typer.Argument(..., help="The section whose own class goes."),
    tenant: str = TENANT,
    as_json: bool = JSON_OUT,
) -> None:
    """Remove a section's own SIS class: its learners' results go to the course's class."""
    from gradesync.answers.sis import class_out

    _change_mapping(
        service.unmap_section,
        tenant,
        destination_id,
        as_json,
        class_out,  # as DELETE .../classes/{course_id}/sections/{section_id}
        lambda link: (
            f"section {section_id} of {course_id} -> class {link.remote_id} (the course's)"
        ),
        {"section_id": "SECTION_ID", "section_mapping": "SECTION_ID"},
        course_id=course_id,
        section_id=section_id,
    )


@app.command("map-student")
def map_student(
    destination_id: str,
    person_id: str,
    student_id: str = typer.Argument(..., help="SIS student sourcedId."),
    tenant: str = TENANT,
    as_json: bool = JSON_OUT,
) -> None:
    """Map a person to their SIS student sourcedId."""
    from gradesync.answers.sis import student_out

    _change_mapping(
        service.map_student,
        tenant,
        destination_id,
        as_json,
        student_out,  # as PUT .../students/{person_id}
        lambda _: f"{person_id} -> student {student_id}",
        person_id=person_id,
        student_id=student_id,
    )


@app.command("map-students")
def map_students(
    destination_id: str, course_id: str, tenant: str = TENANT, as_json: bool = JSON_OUT
) -> None:
    """Link every learner of a course to their SIS student (mapping, else the person's SIS id)."""
    report = _run(
        lambda rt: service.map_course_students(
            rt.uow,
            tenant_id=tenant,
            destination_id=destination_id,
            course_id=course_id,
            clock=rt.clock,
            waker=rt.waker or rt.remote_waker(),
        )
    )
    if as_json:
        from gradesync.answers.sis import roster_out

        print_json(roster_out(report))  # as POST .../courses/{course_id}/students
        return
    console.print(f"{len(report.mapped)} learner(s) mapped")
    if report.unmapped:
        console.print(
            f"[yellow]no SIS id for:[/yellow] {', '.join(report.unmapped)} "
            "(map them with `gradesync sis map-student`)"
        )


@app.command("categories")
def categories(
    destination_id: str,
    tenant: str = TENANT,
    course: str | None = typer.Option(None, help="Check (or align) this course's groups."),
    align: list[str] = typer.Option([], help="GROUP=CATEGORY_SOURCEDID (repeatable)."),
    unalign: list[str] = typer.Option([], help="Remove the alignment of GROUP (repeatable)."),
    offline: bool = typer.Option(False, help="Do not ask the SIS (file-based SIS)."),
    as_json: bool = JSON_OUT,
) -> None:
    """List the SIS's categories, align activity groups, and check a course's alignment.
    A file-based SIS cannot be asked for its categories: align its groups to the category
    sourcedIds the SIS uses, and `sis validate` checks them."""
    from gradesync.answers.sis import categories_out

    pairs = [pair.partition("=") for pair in align]
    wrong = [
        problem("--align", "format", f"{group + sep + cat!r}: write GROUP=CATEGORY_SOURCEDID.")
        for group, sep, cat in pairs
        if not sep or not cat or not group
    ]
    given: dict[str, str] = {}
    for group, sep, cat in pairs:
        if sep and cat and group and given.setdefault(group, cat) != cat:
            wrong.append(
                problem(
                    "--align",
                    "duplicate",
                    f"Group {group!r} is aligned twice ({given[group]!r}, {cat!r}): give one.",
                )
            )
    for group in unalign:
        if not group.strip():
            wrong.append(problem("--unalign", "required", "Name the group whose alignment goes."))
        elif group in given:
            wrong.append(
                problem(
                    "--unalign",
                    "exclusive",
                    f"Group {group!r} is given to --align too: align it or remove its "
                    "alignment, not both.",
                )
            )
    if wrong:
        raise bad_input(*wrong)
    if pairs or unalign:
        will_write()  # before the SIS is asked whether it has the categories

    Found = tuple[list[dict[str, Any]], list[service.CategoryAlignment]] | None

    def go(rt: Runtime) -> Found:
        changes: dict[str, str | None] = {group: cat for group, _, cat in pairs}
        changes |= dict.fromkeys(unalign)
        if changes:  # any change refused (say, a category the SIS does not have) refuses
            # them all, every problem named, nothing saved
            asyncio.run(
                rt.align_sis_categories(
                    tenant, destination_id, changes, course_id=course, removals_must_exist=True
                )
            )
        if not as_json:
            for group, _, cat in pairs:
                console.print(f"aligned {group} -> {cat}")
        if offline or not service.has_rest_api(rt.uow, tenant, destination_id):
            return None  # a file-based SIS cannot be asked: `sis validate` checks its groups

        async def ask() -> tuple[list[dict[str, Any]], list[service.CategoryAlignment]]:
            async with rt.sis_directory(tenant, destination_id) as client:
                cats = await client.categories(refresh=True)
                checks = (
                    await service.check_categories(
                        rt.uow,
                        client,
                        tenant_id=tenant,
                        destination_id=destination_id,
                        course_id=course,
                    )
                    if course
                    else []
                )
            return cats, checks

        try:
            return asyncio.run(ask())
        except RemoteFailure as failure:
            if not (pairs or unalign):
                raise
            # the alignment is stored either way: say so, then why the SIS was not listed
            changed = [f"{g} -> {c}" for g, _, c in pairs] + [f"{g} unaligned" for g in unalign]
            raise fail(
                f"saved ({', '.join(changed)}), but asking the SIS for its categories failed: "
                f"{failure.message}",
                remedy=failure.remedy,
            ) from failure

    options = {"category_id": "--align", "group": "--align", "course_id": "--course"}
    found = _run(go, options | {"alignment": "--unalign"})
    if found is None:
        if as_json:
            print_json({"aligned": [p[0] for p in pairs], "unaligned": list(unalign)})
        return
    cats, checks = found
    if as_json:
        print_json(categories_out(cats, checks))  # as GET .../categories
    else:
        table = id_table("category sourcedId", "title", title="SIS categories")
        for c in cats:
            table.add_row(c["sourcedId"], c.get("title", ""))
        print_table(table)
        if course:
            table = Table(
                "group", "activities", "SIS category", "problem", title=f"alignment of {course}"
            )
            for a in checks:
                table.add_row(
                    a.group or "(none)",
                    ", ".join(a.activities),
                    a.category_id or "",
                    a.problem or "",
                )
            if table.row_count:
                console.print(table)
            else:
                # "none" read after "aligned X -> Y" as if the alignment had not taken
                console.print(
                    f"alignment of {course}: no activity is ticked for the SIS yet (the "
                    "groups of ticked activities are checked: `gradesync sis select`)",
                    highlight=False,
                )
            checked = {a.group for a in checks}
            for group, _, cat in pairs:
                if group not in checked:
                    console.print(
                        f"{group} -> {cat.strip()}: no activity ticked for the SIS is in this "
                        "group yet",
                        highlight=False,
                    )
    if any(a.problem for a in checks):
        raise typer.Exit(EXIT_FAILED)


def _print_checks(
    checks: Sequence[service.ActivityCheck], as_json: bool, destination_id: str
) -> None:
    if as_json:
        from gradesync.answers.sis import checks_out

        # as PUT .../selection and GET .../validation answer, their remedies in the API's words
        print_json(checks_out([c.read_over(Reader.API, destination_id) for c in checks]))
        return
    checks = [c.read_over(Reader.CLI, destination_id) for c in checks]
    table = id_table("activity", "title", "sync to SIS", "problems")
    for c in checks:
        problems = (
            "\n".join(escape(f"{p.field}: {p.message} [{p.rule}]") for p in c.problems)
            or "[green]ok[/green]"
        )
        table.add_row(c.activity_id, c.title, "yes" if c.selected else "no", problems)
    print_table(table)


@app.command("select")
def select(
    destination_id: str,
    activity_ids: list[str] = typer.Argument(..., help="Activity ids."),
    tenant: str = TENANT,
    clear: bool = typer.Option(False, "--clear", help="Clear 'Sync to SIS' instead."),
    hold: bool = typer.Option(
        False,
        "--hold",
        help="Only record the choice: the grades wait for `sis post` (posting a selection).",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Tick (or clear) "Sync to SIS" for activities; ticking refuses invalid activities.
    Ticking sends the activity's grades at once; with --hold they wait for `sis post`."""
    checks = _run(
        lambda rt: asyncio.run(
            rt.tick_sis_activities(
                tenant,
                destination_id,
                activity_ids,
                selected=not clear,
                hold=hold,
                waker=rt.waker or rt.remote_waker(),
            )
        ),
        {"activity_ids": "ACTIVITY_IDS", "destination_id": "DESTINATION_ID"},
        named={"activity_ids"},
    )
    _print_checks(checks, as_json, destination_id)
    if hold and not clear and not as_json:
        console.print("held: the grades wait for `gradesync sis post ... --activity ID`")


@app.command("validate")
def validate(
    destination_id: str,
    tenant: str = TENANT,
    course: str | None = typer.Option(None, help="Check every activity of this course."),
    activity_ids: list[str] = typer.Argument(None, help="Or these activities."),
    offline: bool = typer.Option(
        False, help="Do not ask the SIS whether each activity's group has a category."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Check activities against the SIS's rules before anything is sent, category
    alignment included (a REST SIS is asked for its categories; for a file-based SIS each
    group must be aligned to a category sourcedId, or be one with --category-match id)."""

    Checked = tuple[list[service.ActivityCheck], RemoteFailure | None]

    def go(rt: Runtime) -> Checked:
        checks = service.validate(
            rt.uow,
            tenant_id=tenant,
            destination_id=destination_id,
            course_id=course,
            activity_ids=activity_ids or (),
        )
        if offline or not service.has_rest_api(rt.uow, tenant, destination_id):
            return checks, None

        async def ask() -> list[service.ActivityCheck]:
            async with rt.sis_directory(tenant, destination_id) as client:
                return await service.check_activity_categories(
                    rt.uow,
                    client,
                    tenant_id=tenant,
                    destination_id=destination_id,
                    checks=checks,
                )

        try:
            return asyncio.run(ask()), None
        except RemoteFailure as failure:
            # the rules checked without the SIS still hold: shown, then why it was not asked
            return checks, failure

    options = {"activity_ids": "ACTIVITY_IDS", "course_id": "--course"}
    checks, unasked = _run(go, options, {"activity_ids"})
    if unasked is not None:
        if not as_json:  # stdout holds one JSON document: the error's
            _print_checks(checks, as_json, destination_id)
        fix = unasked.remedy_for(Reader.CLI, destination_id)
        raise fail(
            f"the SIS could not be asked whether each activity's group has a category "
            f"({unasked.code}: {unasked.message})"
            + ("; the checks above were made without it." if not as_json else "."),
            remedy=(f"{fix} " if fix else "")
            + "Run again once the SIS answers, or with --offline to check without asking it.",
        )
    _print_checks(checks, as_json, destination_id)
    if any(c.selected and not c.ok for c in checks):
        raise typer.Exit(EXIT_FAILED)


@app.command("post")
def post(
    destination_id: str,
    course_id: str,
    tenant: str = TENANT,
    activity: list[str] = typer.Option([], help="Post only these activities (repeatable)."),
    remaster: bool = typer.Option(False, help="Resend every result and the line item details."),
    actor: str = typer.Option("cli", help="Who posts (shown in the run history)."),
    as_json: bool = JSON_OUT,
) -> None:
    """Post grades: a run over the course's activities selected for the SIS."""
    from gradesync.answers.sis import post_out

    def go(rt: Runtime) -> tuple[service.PostResult, SyncRun, dict[str, Any]]:
        result = asyncio.run(
            rt.post_sis_grades(
                tenant,
                destination_id,
                course_id,
                actor=actor,
                activity_ids=activity,
                remaster=remaster,
            )
        )
        if result.run is None:  # refused as the API refuses it: bad input, exit 2
            raise service.nothing_to_post(
                result,
                "tick activities with `gradesync sis select` and fix what "
                "`gradesync sis validate` shows.",
            )
        return result, result.run, post_out(rt, tenant, result)

    result, run, out = _run(go, {"activity_ids": "--activity"}, {"activity_ids"})
    if as_json:
        print_json(out)  # as POST .../post (`joined` is in the run)
        return
    for c in result.refused:
        why = "; ".join(p.message for p in c.problems)
        console.print(f"[yellow]left out[/yellow] {c.activity_id}: {why}")
    for activity_id in result.held:
        console.print(f"held back {activity_id}: ticked, waits for its own post")
    verb = "joined" if result.joined else "queued"
    console.print(
        f"run {run.id} {verb}: {len(result.posted)} activity(ies), stage "
        f"{run.stage.value} (follow it with `gradesync runs show {run.id}`)"
    )


@app.command("export-csv")
def export_csv(
    destination_id: str,
    out: Path = typer.Option(..., help="Directory to write into, or a .zip file with --zip."),
    tenant: str = TENANT,
    delta: bool = typer.Option(
        False, help="Only rows changed since --since (default: last export)."
    ),
    since: str | None = typer.Option(None, help="ISO 8601 moment with a zone, for --delta."),
    course: list[str] = typer.Option([], help="Only these courses (repeatable)."),
    as_zip: bool = typer.Option(False, "--zip", help="Write one zip file."),
    actor: str = typer.Option("cli", help="Who exports (shown in the run history)."),
    as_json: bool = JSON_OUT,
) -> None:
    """Bring a file-based SIS up to date (a sync run) and write its OneRoster 1.2 CSV set
    (manifest, lineItems, results)."""
    from gradesync.adapters.destinations import oneroster_csv
    from gradesync.answers.runs import run_out
    from gradesync.services import queries

    def go(rt: Runtime) -> tuple[sis_export.CsvExport, list[RunOut]]:
        moment: datetime | None = None
        if since:
            try:
                # no zone is refused by the use case (timezone_required), as the API refuses
                # it: which zone was meant cannot be guessed
                moment = datetime.fromisoformat(since)
            except ValueError:
                raise InvalidInput.one("since", "datetime", "since must be ISO 8601.") from None
        export = asyncio.run(
            sis_export.export_csv(
                rt.uow,
                rt.clock,
                rt.waker,
                rt.finish_run,
                tenant_id=tenant,
                destination_id=destination_id,
                actor=actor,
                mode=sis_export.ExportMode.DELTA if delta else sis_export.ExportMode.BULK,
                since=moment,
                course_ids=course,
                deliver=write,
            )
        )
        # each run as `GET /runs/{id}` shows it, stages included
        shown = [queries.run_detail(rt.uow, tenant, r.id) for r in export.runs]
        return export, [run_out(d.run, d.stages) for d in shown]

    def write(files: dict[str, str]) -> None:
        try:
            oneroster_csv.write(files, out, as_zip=as_zip)
        except OSError as exc:  # nothing is remembered: the next delta still has these rows
            where = "a zip file" if as_zip else "a directory"
            raise InvalidInput.one(
                "out", "writable", f"Cannot write the export to {out} ({where}): {exc}"
            ) from None

    export, runs = _run(go, EXPORT_OPTIONS, named=("course_ids",))
    if as_json:
        print_json(
            {
                "mode": export.mode.value,
                "out": str(out),
                "exported_at": export.exported_at,
                "rows": {name: len(rows) for name, rows in export.rows.items()},
                "runs": runs,
                "refused": list(export.refused),
            }
        )
        return
    for run in export.runs:
        outcome = run.outcome.value if run.outcome else run.stage.value
        console.print(f"run {run.id} {outcome}: {escape(run.message or '')}")
    counts = ", ".join(f"{name}: {len(rows)}" for name, rows in export.rows.items())
    console.print(f"{export.mode.value} export written to {out} ({counts})")
    for line in export.refused:
        console.print(f"[yellow]left out[/yellow] {line}")
