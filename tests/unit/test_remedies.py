"""A reason's remedy as a console instructor can act on it (domain.remedies): a command they
cannot run gives way to who can do it; other words stay."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gradesync.cli import app
from gradesync.domain import remedies
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis.checks import Check
from gradesync.domain.passback import PassbackRule


def test_every_command_of_the_command_line_is_recognised() -> None:
    names = {c.name for c in app.registered_commands} | {
        g.name for g in app.registered_groups if g.name
    }
    assert names == set(remedies.CLI_COMMANDS)


def test_a_remedy_naming_a_command_says_who_can_do_it() -> None:
    said = (
        "The course 'Algebra' is not mapped to a SIS class. — gradesync sis map-class sis c1 "
        "CLASS_SOURCEDID --school SCHOOL_SOURCEDID"
    )
    assert remedies.for_instructor("class_not_mapped", said) == (
        "The course 'Algebra' is not mapped to a SIS class. — Ask a gradesync administrator "
        "to map this course to its SIS class."
    )
    ticked = (
        "The activity 'Quiz' is not selected for SIS passback. — Tick 'Sync to SIS' for it "
        "(gradesync sis select)."
    )
    assert remedies.for_instructor("not_selected_for_sis", ticked).endswith(
        "— Ask a gradesync administrator to tick 'Sync to SIS' for this activity."
    )
    # the sentences of a remedy that name no command stay; a code without words of its own
    # gets the general ones
    mixed = "401 Unauthorized — The SIS refused us. Run `gradesync sis add sis --client-secret`."
    assert remedies.for_instructor("token_refused", mixed) == (
        f"401 Unauthorized — The SIS refused us. {remedies.GENERAL}"
    )
    # a remedy alone (a diagnosis's), with a command
    alone = "Link the learner: `gradesync sis map-student sis p1 SOURCEDID`."
    assert remedies.for_instructor(None, alone) == remedies.GENERAL


def test_words_without_a_command_are_kept_as_they_are() -> None:
    for text in (
        "The LMS refused the score. — Open the activity in the LMS once more.",
        "the grade is sent automatically once they open any gradesync link in the course",
        "Retried automatically.",
    ):
        assert remedies.for_instructor("anything", text) == text


def test_a_course_not_mapped_to_a_sis_class_is_said_to_an_instructor_without_commands() -> None:
    from gradesync.domain.course_connection import not_connected
    from gradesync.domain.model import Course, Destination, DestinationKind

    course = Course("t", "c1", "Algebra")
    sis = Destination("t", "sis", DestinationKind.ONEROSTER_CSV, "District SIS")
    missing = not_connected(course, sis)
    assert "gradesync sis map-class" in missing.text  # an admin's words
    assert missing.for_instructor == (
        "Algebra is not connected to District SIS: it is not mapped to a SIS class, so no grade "
        "of it is sent there. Ask a gradesync administrator to map this course to its SIS class."
    )
    # an administrator reads the command at the command line, the API's route over the API
    # and the course's SIS page in the console
    assert missing.read_over(remedies.Reader.CLI) == missing.text
    over_api = missing.read_over(remedies.Reader.API)
    assert "`PUT /api/v1/sis/connections/sis/classes/c1` with its `class_id`" in over_api
    assert "`PUT /api/v1/sis/connections/sis/selection`" in over_api
    in_console = missing.in_console(instructor=False)
    assert "SIS passback page (/console/sis/sis/courses/c1, Class and students)" in in_console
    assert missing.in_console(instructor=True) == missing.for_instructor
    for said in (over_api, in_console):
        assert said.startswith("Algebra is not connected to District SIS: it is not mapped")
        assert not remedies.names_command(said), said


def test_a_stalled_grades_remedy_names_no_command_to_an_api_or_console_reader() -> None:
    """A grade nothing sends told every reader to check `gradesync serve` or `gradesync
    worker`: over the API and in the console, it says who runs them and what there shows it."""
    from datetime import UTC, datetime, timedelta

    from gradesync.domain.diagnosis.checks import DestinationQueue
    from gradesync.domain.diagnosis.destination_checks import pending_said
    from gradesync.domain.model import (
        DeliveryState,
        Destination,
        DestinationKind,
        LedgerKey,
        LedgerRow,
    )

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    row = LedgerRow(
        LedgerKey("t", "lms", "a1", "p1"),
        DeliveryState.PENDING,
        updated_at=now - timedelta(hours=1),
    )
    lms = Destination("t", "lms", DestinationKind.LTI13_AGS, "Canvas")
    _, remedy, code = pending_said(lms, row, "The grade", now, DestinationQueue())
    assert code == remedies.PENDING_STALLED and remedy is not None
    assert "gradesync worker" in remedy  # an operator's words at the command line
    assert remedies.for_reader(code, remedy, remedies.Reader.CLI, "lms") == remedy
    api = remedies.for_reader(code, remedy, remedies.Reader.API, "lms")
    console = remedies.for_reader(code, remedy, remedies.Reader.CONSOLE, "lms")
    for said in (api, console):
        assert said.startswith("Ask whoever runs gradesync to check that its workers are running")
        assert said.endswith("The grade goes once one sends again.")
        assert not remedies.names_command(said), said
    assert "`GET /readyz`" in api and "`GET /metrics`" in api
    assert "the Dashboard shows how many grades wait and since when" in console


def test_a_diagnosis_remedy_naming_a_command_is_said_by_its_check_to_an_instructor() -> None:
    """Each diagnosis check whose remedy names a command has words of its own, by the check's
    code, or by the reason behind it when the check has several causes."""
    from datetime import UTC, datetime

    from gradesync.domain.diagnosis.checks import CheckCode, DestinationFacts
    from gradesync.domain.diagnosis.destination_checks import (
        course_link_check,
        destination_ready_check,
    )
    from gradesync.domain.model import Course, CourseLink, Destination, DestinationKind

    course = Course("t", "c1", "Algebra")
    sis = Destination("t", "sis", DestinationKind.ONEROSTER_CSV, "District SIS")
    lms = Destination("t", "lms", DestinationKind.LTI13_AGS, "Canvas")

    def said(check: Check) -> str:
        assert check.remedy is not None and remedies.names_command(check.remedy)
        return remedies.for_instructor(check.remedy_code, check.remedy)

    def facts(d: Destination, link: CourseLink | None = None) -> DestinationFacts:
        return DestinationFacts(d, Capabilities(), link, None, None, (), None)

    at_sis = course_link_check(facts(sis), course)
    assert said(at_sis) == f"{remedies.ASK} map this course to its SIS class."
    no_scope = course_link_check(facts(lms, CourseLink("t", "lms", "c1", "")), course)
    assert said(no_scope) == remedies.FOR_INSTRUCTORS["no_grade_scope"]
    paused = destination_ready_check(
        replace(sis, enabled=False), Capabilities(), datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert said(paused) == f"{remedies.ASK} fix what paused this destination, then resume it."
    # an administrator reads the command at the command line, the route over the API and
    # the button in the console
    assert paused.remedy is not None
    code, remedy, sis_id = paused.remedy_code, paused.remedy, paused.destination_id
    assert remedies.for_reader(code, remedy, remedies.Reader.CLI, sis_id) == remedy
    assert remedies.for_reader(code, remedy, remedies.Reader.API, "a b") == (
        "Fix the cause, then resume it (`POST /api/v1/destinations/a%20b/resume`)."
    )
    assert "Resume button" in remedies.for_reader(code, remedy, remedies.Reader.CONSOLE, sis_id)
    # the words kept by a check's code are for codes that exist
    codes = {c.value for c in CheckCode}
    named = set(remedies.FOR_INSTRUCTORS) & codes
    assert named == {"destination_ready", "grade_scope", "matched_in_sis", "rate_limit"}


def test_missing_grade_scopes_and_refused_credentials_name_the_check_where_it_is_read() -> None:
    """The LMS's missing grade scopes and a refusal of gradesync's credentials said "then run
    `gradesync destinations check`" to every reader: over the API they name the check's route,
    in the console its Check button; the command line keeps the command."""
    from gradesync.domain.diagnosis.checks import REMOTE_CAUSES
    from gradesync.domain.diagnosis.destination_checks import grade_scope_check
    from gradesync.domain.model import Destination, DestinationKind

    lms = Destination(
        "t", "lms", DestinationKind.LTI13_AGS, "Canvas", config={"scopes": ["openid"]}
    )
    scope = grade_scope_check(lms)
    assert scope is not None and scope.remedy is not None
    sis_refusal = "Check the SIS client id and secret (gradesync sis add ... --client-secret)."
    for code, remedy in (
        (scope.remedy_code, scope.remedy),
        ("no_grade_scope", REMOTE_CAUSES["no_grade_scope"][1]),
        ("bad_credentials", REMOTE_CAUSES["bad_credentials"][1]),
        ("bad_credentials", sis_refusal),
    ):
        assert remedies.names_command(remedy)
        assert remedies.for_reader(code, remedy, remedies.Reader.CLI, "lms") == remedy
        api = remedies.for_reader(code, remedy, remedies.Reader.API, "lms")
        console = remedies.for_reader(code, remedy, remedies.Reader.CONSOLE, "lms")
        assert api.endswith("(`POST /api/v1/destinations/lms/check`)."), api
        assert console.endswith("(its Check button on the Destinations page)."), console
        for said in (api, console):
            assert not remedies.names_command(said), said
    bad = remedies.for_reader("bad_credentials", sis_refusal, remedies.Reader.API, "sis")
    assert "`PUT /api/v1/sis/connections/sis` with `client_id` and `client_secret`" in bad
    bad = remedies.for_reader("bad_credentials", sis_refusal, remedies.Reader.CONSOLE, "sis")
    assert "(/console/sis/sis/edit, its settings page)" in bad


def test_a_learner_to_link_in_the_sis_is_named_by_the_route_or_page_with_their_id() -> None:
    """Linking a learner to their SIS student read `gradesync sis map-student ...` to every
    reader: over the API it names the student route for this learner, in the console the
    course's SIS passback page; the diagnosis fills in the learner and course it is about."""
    from gradesync.domain.diagnosis.checks import CheckCode, Diagnosis
    from gradesync.domain.diagnosis.destination_checks import map_student_remedy
    from gradesync.domain.model import Destination, DestinationKind

    sis = Destination("t", "sis", DestinationKind.ONEROSTER_CSV, "District SIS")
    remedy = map_student_remedy(sis, "p 1")
    check = Check(CheckCode.MATCHED_IN_SIS, "Matched", False, "No such student.", remedy, "sis")
    details = {"course_id": "c1", "activity_id": "a1", "person_id": "p 1"}
    diagnosis = Diagnosis("learner_activity", "p 1 · Quiz", (check,), details)
    assert diagnosis.read_over(remedies.Reader.CLI).checks[0].remedy == remedy
    api = diagnosis.read_over(remedies.Reader.API).checks[0].remedy
    assert api == (
        "Link the learner to the student sourcedId the SIS has "
        "(`PUT /api/v1/sis/connections/sis/students/p%201` with its `student_id`)."
    )
    console = diagnosis.read_over(remedies.Reader.CONSOLE).checks[0].remedy
    assert console is not None and "(/console/sis/sis/courses/c1, Class and students" in console
    for said in (api, console):
        assert not remedies.names_command(said or ""), said
    # without the learner's id, its place says what goes there
    alone = remedies.for_reader("matched_in_sis", remedy, remedies.Reader.API, "sis")
    assert "/students/PERSON_ID`" in alone


def test_a_group_without_a_sis_category_is_aligned_by_the_route_or_page_naming_it() -> None:
    """A SIS's refusal of an activity group it has no category for read `gradesync sis
    categories sis --align GROUP=CATEGORY_ID` to every reader: over the API it names the
    alignment route for the group the reader gives (the refused activity's), in the console
    the course's SIS passback page; the command line keeps the command."""
    fix = remedies.Remedy("category_missing", "sis", group="Lab's work")
    cli = fix.words(remedies.Reader.CLI)
    assert "gradesync sis categories sis --align 'Lab'\"'\"'s work'=CATEGORY_ID (" in cli
    said = (
        'Activity group "Lab\'s work": no SIS category matches it by name. The SIS has these '
        f"categories: 'Quizzes' (id cat-1). — {cli}"
    )
    code, group = "category_missing", "Lab's work"
    assert remedies.for_reader(code, said, remedies.Reader.CLI, "sis", group=group) == said
    api = remedies.for_reader(code, said, remedies.Reader.API, "sis", course_id="c1", group=group)
    route = (
        "Align the group to one of the SIS's categories (`PUT /api/v1/sis/connections/sis/"
        "alignments/Lab%27s%20work` with its `category_id`, and `course_id` for one course "
        "only; `GET /api/v1/sis/connections/sis/categories` lists them)."
    )
    assert api == said.rpartition(" — ")[0] + " — " + route
    assert fix.words(remedies.Reader.API) == route  # the same words, made from the code
    console = remedies.in_console(
        code, said, instructor=False, destination_id="sis", course_id="c1", group=group
    )
    assert console.endswith(
        " — Align the group to one of the SIS's categories under Category alignment on the "
        "course's SIS passback page (/console/sis/sis/courses/c1)."
    )
    for text in (api, console):
        assert not remedies.names_command(text), text
    # the group is what the reader gives, never read back from the words: a reader that does
    # not know it reads its placeholder
    unsaid = remedies.for_reader(code, said, remedies.Reader.API, "sis", course_id="c1")
    assert "/alignments/GROUP`" in unsaid


def test_the_group_of_a_stored_refusal_is_the_activitys_or_the_default_category() -> None:
    code = "category_missing"
    assert remedies.reason_group(code, "Quizzes", {"default_category": "Misc"}) == "Quizzes"
    assert remedies.reason_group(code, None, {"default_category": "Misc"}) == "Misc"
    assert remedies.reason_group(code, None, {}) is None
    # a blank default category is none (the connection's settings refuse one)
    assert remedies.reason_group(code, None, {"default_category": " "}) is None
    assert remedies.reason_group("not_selected_for_sis", "Quizzes", {}) is remedies.Unsaid.GROUP


def test_an_activity_without_a_group_is_fixed_by_the_default_category_where_it_is_read() -> None:
    """An activity with no group at a SIS with no default category read `--align GROUP=...`
    to every reader, the command line included: no alignment names it. Each reader reads
    what sets the connection's default category: the command, the connection route, the
    connection's settings page; an instructor what to ask for."""
    cli = remedies.Remedy("category_missing", "sis").words(remedies.Reader.CLI)
    assert "gradesync sis add sis --default-category GROUP" in cli
    assert "--align" not in cli
    said = (
        f"Activity group (none): the activity has no group and no default_category is set. — {cli}"
    )
    code = "category_missing"
    assert remedies.for_reader(code, said, remedies.Reader.CLI, "sis", group=None) == said
    api = remedies.for_reader(code, said, remedies.Reader.API, "sis", course_id="c1", group=None)
    assert "(`PUT /api/v1/sis/connections/sis` with `profile.default_category`)" in api
    console = remedies.in_console(
        code, said, instructor=False, destination_id="sis", course_id="c1", group=None
    )
    assert "the SIS connection's settings page (/console/sis/sis/edit)" in console
    instructor = remedies.in_console(code, said, instructor=True, destination_id="sis", group=None)
    assert instructor.endswith(
        "set the default category of this SIS connection (the group "
        "of activities without one), or give this activity a group."
    )
    for text in (api, console, instructor):
        assert text.startswith("Activity group (none): the activity has no group"), text
        assert "alignments" not in text and "Category alignment" not in text, text
        assert not remedies.names_command(text), text
    # a group is aligned, as before
    aligned = remedies.Remedy("category_missing", "sis", group="Quizzes")
    assert "--align Quizzes=CATEGORY_ID" in aligned.words(remedies.Reader.CLI)


# a misconfigured consumer's reason as rows were stored before its remedy was held as a code
OLD_CONSUMER_ROW = (
    "The LTI 1.1 consumer's secret.consumer_secret is required (the shared secret). — Its "
    "settings are described in docs/lti11.md."
)


@pytest.mark.parametrize("stored_as", ["code", "words"])
def test_a_misconfigured_lti11_consumer_names_what_fixes_it_where_it_is_read(
    stored_as: str,
) -> None:
    """A consumer gradesync cannot send with read `gradesync lti11 add-consumer` to every
    reader. Over the API it names the consumer route and the resume route; in the console,
    whose Destinations page changes no consumer, who changes it and how, and the Resume
    button; the command line keeps the command. A row stores the remedy as its code; one
    stored as words before reads the same."""
    from gradesync.adapters.destinations.lti11 import ConsumerConfig
    from gradesync.domain.ledger import stored
    from gradesync.domain.model import Destination, DestinationKind
    from gradesync.services.delivery.failures import reason_of
    from gradesync.services.destination import RemoteFailure

    consumer = Destination(
        "t", "lms 11", DestinationKind.LTI11_OUTCOMES, "LMS", config={"consumer_key": "k"}
    )
    try:
        ConsumerConfig.from_destination(consumer)
        raise AssertionError("a consumer without a secret is refused")
    except RemoteFailure as failure:
        reason = reason_of(failure)
    # what happened names no command: a pause reason repeats it to every reader
    happened = "The LTI 1.1 consumer's secret.consumer_secret is required (the shared secret)."
    assert reason.text == happened
    code, said = reason.code, stored(reason) if stored_as == "code" else OLD_CONSUMER_ROW
    assert not remedies.names_command(said)
    cli = remedies.for_reader(code, said, remedies.Reader.CLI, consumer.id)
    assert cli == happened + (
        " — Fix the LTI 1.1 consumer's settings (`gradesync lti11 add-consumer --id 'lms 11'` "
        "with its --key and --allowed-host, and --generate-secret for a new secret; "
        "docs/lti11.md), then resume it (`gradesync destinations resume 'lms 11'`)."
    )
    api = remedies.for_reader(code, said, remedies.Reader.API, consumer.id)
    assert "(`PUT /api/v1/lti11/consumers/lms%2011` with its `consumer_key`" in api
    assert api.endswith("then resume it (`POST /api/v1/destinations/lms%2011/resume`).")
    console = remedies.in_console(code, said, instructor=False, destination_id=consumer.id)
    assert "the Destinations page adds a consumer but does not change one" in console
    assert console.endswith("Then resume it (its Resume button on the Destinations page).")
    for text in (api, console):
        assert text.startswith(happened), text
        assert not remedies.names_command(text), text
    # an instructor reads what to ask for
    assert remedies.in_console(code, said, instructor=True, destination_id=None) == (
        f"{happened} — Ask a gradesync administrator to check this gradebook connection's settings."
    )


# every remedy gradesync holds as a code (`Remedy`), built as its makers build it (the
# destination check, the SIS's rules and adapters, the SIS selection)
MADE = [
    remedies.Remedy(remedies.RESUME, destination="sis"),
    remedies.Remedy(PassbackRule.CLASS_NOT_MAPPED.value, "sis", "c1"),
    remedies.Remedy("class_without_school", "sis", "c1", sis_class="cls-1"),
    remedies.Remedy(PassbackRule.NOT_SELECTED.value, "sis", activity="a1"),
    remedies.Remedy(PassbackRule.NOT_POSTED.value, "sis", "c1", "a1"),
    remedies.Remedy(PassbackRule.CATEGORY_MISSING.value, "sis", group="Quiz"),
    remedies.Remedy(PassbackRule.CATEGORY_MISSING.value, "sis", group=None),  # no group
    remedies.Remedy("sis_credentials", "sis"),
    remedies.Remedy("align_groups", "sis", category_word="CATEGORY_SOURCEDID"),
    remedies.Remedy(PassbackRule.OTHER_INSTALLATION.value, "sis", "c1", "a1"),
]


@pytest.mark.parametrize("fix", MADE, ids=lambda f: f.key)
def test_every_remedy_made_has_words_for_every_reader(fix: remedies.Remedy) -> None:
    """A remedy is worded while a failure is built, in the middle of a send: a code missing
    from a reader's words would leave that reader the command line's words, or none. Each
    reader reads its own: the command line a command, the API its route, the console its
    page or button, never a command they cannot run."""
    said = {reader: fix.words(reader) for reader in remedies.Reader}
    for reader, words in said.items():
        assert words != remedies.UNWORDED and "{" not in words, (reader, words)
        assert remedies.names_command(words) is (reader is remedies.Reader.CLI), (reader, words)
    assert "/api/v1/" in said[remedies.Reader.API], said


def test_a_code_with_no_words_is_said_plainly_and_never_raises() -> None:
    fix = remedies.Remedy("bad_credentials", destination="sis")  # the API's and console's only
    assert fix.words(remedies.Reader.CLI) == remedies.UNWORDED
    assert "PUT /api/v1/sis/connections/sis" in fix.words(remedies.Reader.API)
    for reader in remedies.Reader:
        assert remedies.Remedy("new_adapter_code").words(reader) == remedies.UNWORDED


def test_a_rate_limit_holding_grades_names_what_changes_it_where_it_is_read() -> None:
    """A rate limit that holds the grades waiting told every reader that an administrator
    changes it, pointing at docs/operations.md, where a pause names its command, route or
    button: the command line now reads its command, the API its route, the console who
    changes it and with what, an instructor whom to ask; each keeps "nothing to do" first."""
    from datetime import UTC, datetime, timedelta

    from gradesync.domain.diagnosis.checks import DestinationQueue
    from gradesync.domain.diagnosis.destination_checks import pending_said, rate_limit_check
    from gradesync.domain.model import (
        DeliveryState,
        Destination,
        DestinationKind,
        LedgerKey,
        LedgerRow,
    )

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    lms = Destination(
        "t", "lms", DestinationKind.LTI13_AGS, "Canvas", config={"rate_per_second": 0.01}
    )
    row = LedgerRow(
        LedgerKey("t", "lms", "a1", "p1"), DeliveryState.PENDING, updated_at=now - timedelta(1)
    )
    _, remedy, code = pending_said(lms, row, "The grade", now, DestinationQueue(waiting=7))
    check = rate_limit_check(lms, 7)
    assert check is not None and not check.passed
    assert (check.remedy_code, check.remedy) == (code, remedy)
    first = "Nothing to do if that pace is meant. "
    cli = remedies.for_reader(code, remedy, remedies.Reader.CLI, "lms")
    assert cli == remedy and "`gradesync destinations limits lms --rate-per-second N`" in cli
    api = remedies.for_reader(code, remedy, remedies.Reader.API, "lms")
    console = remedies.for_reader(code, remedy, remedies.Reader.CONSOLE, "lms")
    instructor = remedies.for_instructor(code, remedy)
    for said in (cli, api, console, instructor):
        assert said.startswith(first), said
        assert "docs/operations.md, Delivery" not in said, said
    for said in (api, console, instructor):
        assert not remedies.names_command(said), said
    assert "`PATCH /api/v1/destinations/lms/limits` with `rate_per_second`" in api
    assert "`PATCH /api/v1/destinations/lms/limits`" in console and "`destinations limits`" in (
        console
    )
    assert instructor == (
        f"{first}{remedies.ASK} raise or clear this destination's rate limit if that pace is "
        "not meant."
    )


def test_a_stored_reason_reads_back_what_happened_and_its_remedys_code() -> None:
    """A row keeps what happened and its remedy's code and ids (never a reader's words);
    words stored before read as words, and a remote's words that look like the stored form
    are stored so that they read back as they were."""
    fix = remedies.Remedy("category_missing", "sis", group="Lab's work")
    text = remedies.stored_text("The SIS has no category for 'Lab's work'.", fix)
    assert not remedies.names_command(text)
    assert remedies.stored_reason(text) == remedies.StoredReason(
        "The SIS has no category for 'Lab's work'.", fix
    )
    old = "Not mapped. — gradesync sis map-class sis c1 CLASS_SOURCEDID --school SCHOOL_SOURCEDID"
    assert remedies.stored_reason(old) == remedies.StoredReason(old, old=True)
    assert remedies.said_of(old) == "Not mapped."
    for said in ('{"said": "not ours"}', "{not json"):
        kept = remedies.stored_text(said)
        assert remedies.said_of(kept) == said and remedies.stored_reason(kept).fix is None
    api = remedies.for_reader("category_missing", text, remedies.Reader.API, None)
    assert "`PUT /api/v1/sis/connections/sis/alignments/Lab%27s%20work`" in api, api


def test_the_command_line_reads_the_command_before_the_console() -> None:
    """A remedy read at the command line that also names the console's way names the
    command first: it read "Align the group under Category alignment on the course's SIS
    page in the console, or: gradesync sis categories ...", the console first."""
    for code in sorted(remedies._CLI_WORDS):
        fix = remedies.Remedy(code, "sis", "c1", "a1", group="Labs")
        words = fix.words(remedies.Reader.CLI)
        if "console" not in words:
            continue
        command = words.find("gradesync ")
        assert -1 < command < words.index("console"), (code, words)


def test_a_remedy_stored_before_the_person_was_kept_reads_the_same() -> None:
    """`person` was added to `Remedy`: a remedy without one is stored as before (no
    `"person": null`), so a ledger row's reason is not rewritten for it on its next compute."""
    fix = remedies.Remedy("bad_credentials", destination="lms")
    text = remedies.stored_text("Said.", fix)
    assert '"person"' not in text and '"activity": null' in text
    matched = remedies.Remedy("match_sis_students", destination="sis", person="p1")
    held = remedies.stored_text("Said.", matched)
    assert '"person": "p1"' in held and remedies.stored_reason(held).fix == matched


def test_a_learner_with_no_sis_id_is_told_the_command_line_s_way_first() -> None:
    """The command line's remedy for a learner with no SIS id led with the API's route
    (`PUT /api/v1/people/...`): a remedy is worded for where it is read, so its command
    comes first there; the route, for a SIS id given where gradesync gets its people, after."""
    fix = remedies.Remedy(remedies.GIVE_SIS_ID, destination="sis", course="c1", person="p1")
    cli = fix.words(remedies.Reader.CLI)
    first = "Link the learner to their SIS student: gradesync sis map-student sis p1 SOURCEDID."
    assert cli.startswith(first), cli
    assert cli.index("gradesync sis map-student") < cli.index("PUT /api/v1/people/p1"), cli
