"""A reason's remedy in words the reader can act on.

A remedy is best held as a code and the ids it is about (`Remedy`, and a problem carrying
one, `RemedyProblem`): each reader's words are then made once, from it. The command line
reads its command (`gradesync sis map-class ...`); an administrator reading over the HTTP API
or in the console reads the API's route or the console's page or button that does the same
(`FOR_READERS`), never a command they cannot run; an instructor in the console reads what an
administrator does and that they can ask for it (`FOR_INSTRUCTORS`). The SIS adapters refuse
so (`RemoteFailure.fix`, `ProbeStep.fix`), and the SIS's validation so words its problems.

A ledger row stores its reason so too (`stored_text`): what happened, and the remedy's code
and ids, read back (`stored_reason`) and worded for its reader when the row is read
(`for_reader`, `for_instructor`); a diagnosis quotes what happened (`said_of`) and words the
remedy apart (`remedy_of`). Rows stored before hold words ("what happened — remedy", the
remedy in the command line's words) and are still read so: reworded by their code, about
the ids their reader knows, the activity group included (`reason_group`: never read back from
the words). Only they still need to be told apart by what they name (`names_command`,
`without_commands`): only a remedy naming a command is replaced, or, for a code whose adapter
worded its remedy for no reader (`NEUTRAL`), the whole remedy, at the command line too.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import quote

from gradesync.domain.errors import FieldProblem
from gradesync.domain.passback import PassbackRule, configured_default_category, group_of

# the command line's commands (gradesync.cli), as a remedy names them
CLI_COMMANDS = (
    "db",
    "destinations",
    "doctor",
    "import",
    "keys",
    "lti11",
    "overrides",
    "platforms",
    "policy",
    "repair",
    "runs",
    "sandbox",
    "schedules",
    "serve",
    "sis",
    "sync",
    "tenants",
    "users",
    "worker",
)
_COMMAND = re.compile(r"\bgradesync (?:" + "|".join(CLI_COMMANDS) + r")\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SEPARATOR = " — "  # between what happened and the remedy (services.destination.reason_of)

ASK = "Ask a gradesync administrator to"
# the reason code of a grade waiting with nothing sending it (diagnosis.destination_checks,
# which imports this module: the code is defined here, once)
PENDING_STALLED = "pending_stalled"
_GRADE_SCOPE = (
    f"{ASK} enable Assignment and Grade Services (the score and line item scopes) for "
    "gradesync's registration in the LMS."
)
# per reason code, what an administrator does, as an instructor asks for it
FOR_INSTRUCTORS: dict[str, str] = {
    PassbackRule.CLASS_NOT_MAPPED.value: f"{ASK} map this course to its SIS class.",
    PassbackRule.NOT_SELECTED.value: f"{ASK} tick 'Sync to SIS' for this activity.",
    PassbackRule.NOT_POSTED.value: f"{ASK} post this activity's grades to the SIS.",
    "no_grade_scope": _GRADE_SCOPE,
    "bad_credentials": f"{ASK} check this gradebook connection's key and secret.",
    "bad_configuration": f"{ASK} check this gradebook connection's settings.",
    # the diagnosis's checks (CheckCode, named here as text: the diagnosis imports this module)
    # whose remedies name a command; a check with several causes names its reason instead
    "destination_ready": f"{ASK} fix what paused this destination, then resume it.",
    "rate_limit": f"{ASK} raise or clear this destination's rate limit if that pace is not meant.",
    "grade_scope": _GRADE_SCOPE,
    "matched_in_sis": f"{ASK} link the learner to their student in the SIS.",
    # a SIS learner matched to no student: by their SIS id, or with none, by hand
    "match_sis_students": f"{ASK} match this learner to their SIS student by their SIS id.",
    "give_sis_id": f"{ASK} give this learner their SIS id, or link them to their SIS student.",
    "relink_sis_students": f"{ASK} link this course's learners to their SIS students by "
    "their SIS ids again.",
    # a grade pending far longer than a send takes (diagnosis.destination_checks)
    PENDING_STALLED: f"{ASK} check that gradesync is sending grades: this one should have "
    "reached the gradebook within seconds. Tell them the learner, the activity and this message.",
    PassbackRule.CATEGORY_MISSING.value: f"{ASK} align this activity's group with a category "
    "of the SIS.",
    # a missing category of an activity with no group (`category_key`)
    "class_without_school": f"{ASK} map this course's SIS class again with its school.",
    "sis_credentials": f"{ASK} check the SIS connection's client id and secret.",
    "no_default_category": f"{ASK} set the default category of this SIS connection (the group "
    "of activities without one), or give this activity a group.",
    PassbackRule.OTHER_INSTALLATION.value: f"{ASK} settle which gradesync installation passes "
    "this activity's grades back to the SIS class: another one writes to the same line item.",
}
GENERAL = (
    f"{ASK} fix this (it needs their tools); tell them the learner, the activity and this message."
)


def names_command(text: str) -> bool:
    """Whether the text names a gradesync command a person would type. Kept for rows stored
    as words (with the command line's remedy, before remedies were stored as codes), which
    are reworded where they are read; a `Remedy` is never read back so."""
    return _COMMAND.search(text) is not None


def _commands_replaced(text: str, instead: str) -> str:
    """The remedy's sentences that name a command give way to `instead`; what happened (the
    text before the SEPARATOR) and the other sentences are kept."""
    said, sep, remedy = text.rpartition(SEPARATOR)
    if not sep:
        said, remedy = "", text
    kept = [s for s in _SENTENCE_END.split(remedy) if s and not names_command(s)]
    joined = " ".join([*kept, instead])
    return f"{said}{SEPARATOR}{joined}" if said else joined


def without_commands(text: str) -> str:
    """A row stored as words with its remedy's sentences that name a command left out, for
    words every reader reads alike (a diagnosis's evidence, `said_of`): what happened stays,
    and the remedy is the reader's own (`for_reader`)."""
    if not names_command(text):
        return text
    said, sep, remedy = text.rpartition(SEPARATOR)
    if not sep:
        said, remedy = "", text
    kept = " ".join(s for s in _SENTENCE_END.split(remedy) if s and not names_command(s))
    return f"{said}{SEPARATOR}{kept}" if said and kept else said or kept


def _reworded(code: str | None, text: str) -> bool:
    """Whether the reason's remedy gives way to a reader's words: it names a command, or its
    code is one whose adapter words its remedy for no reader in particular (`NEUTRAL`)."""
    return names_command(text) or (code in NEUTRAL and SEPARATOR in text)


def _replaced(code: str | None, text: str, instead: str) -> str:
    if code in NEUTRAL and SEPARATOR in text:  # the whole remedy is the reader's
        return f"{text.rpartition(SEPARATOR)[0]}{SEPARATOR}{instead}"
    return _commands_replaced(text, instead)


class Unsaid(Enum):
    """A reason's activity group when its reader does not know it (`GROUP` then stands in)."""

    GROUP = "group"


# a missing category's activity group, as the reader of a reason knows it: its name, None for
# an activity without a group (and no default category), or not known
Group = str | None | Unsaid


def for_instructor(code: str | None, text: str, *, group: Group = Unsaid.GROUP) -> str:
    """The reason as an instructor can act on it: a remedy stored as a code (`stored_text`)
    says who can do it; in a row stored as words, the remedy's sentences that name a command
    (or a `NEUTRAL` code's remedy) give way to who can do it (by the reason's code and, for a
    missing category, whether the activity has a `group`); any other text is kept."""
    held = stored_reason(text)
    if not held.old:
        return (
            held.said if held.fix is None else f"{held.said}{SEPARATOR}{held.fix.for_instructor()}"
        )
    if not _reworded(code, text):
        return text
    return _replaced(code, text, FOR_INSTRUCTORS.get(category_key(code, group), GENERAL))


class Reader(StrEnum):
    """Where an administrator reads a remedy, and so how they act on it."""

    CLI = "cli"  # the command line: the commands as they are
    API = "api"  # the HTTP API (a person or a program): its routes
    CONSOLE = "console"  # the web console: its pages and buttons


# per reader and reason code, what a remedy's command is where that reader is ({destination},
# {course}, {activity}, {person}: their ids as a URL's path holds them; {group}: the activity
# group given); a code missing keeps its command
_SIS_CLASS = PassbackRule.CLASS_NOT_MAPPED.value
_CATEGORY = PassbackRule.CATEGORY_MISSING.value
_SELECT, _POST = PassbackRule.NOT_SELECTED.value, PassbackRule.NOT_POSTED.value
# another installation's line item under the activity's own sourcedId: what settles it is at
# the SIS or in how gradesync is run (the same for every reader); ticking sends the grades
_OTHERS = PassbackRule.OTHER_INSTALLATION.value
_OTHERS_SETTLED = (
    "If that installation no longer passes back to this class, delete its line item in the "
    "SIS; if it is this one under the GRADESYNC_BASE_URL it had before, set that again; if "
    "both pass back here, one passes this activity back through a SIS connection whose id "
    "the other does not use (docs/oneroster.md, 'Two installations, one SIS'). Then tick "
    "'Sync to SIS' for it again "
)
# a missing category of an activity with no group: no alignment names it (`category_key`)
_NO_GROUP = "no_default_category"
# remedies only a `Remedy` names (no reason is stored with them): a class mapped without its
# school, a SIS's client refused, a file-based SIS's groups aligned to nothing
_NO_SCHOOL, _SIS_CREDENTIALS, _ALIGN_GROUPS = (
    "class_without_school",
    "sis_credentials",
    "align_groups",
)
# a SIS learner matched to no student of the class: with a SIS id (not matched yet: the
# course's next sync, or map-students, matches them), or with none (given one, or linked)
MATCH_SIS_STUDENTS, GIVE_SIS_ID = "match_sis_students", "give_sis_id"
# a SIS learner linked to a student other than their SIS id's, not by hand: map-students
# links them by their SIS id (a course's sync matches only learners with no student)
RELINK_SIS_STUDENTS = "relink_sis_students"
# a destination an administrator paused: its check says grades wait for it to be resumed
RESUME = "resume_destination"
RESUMED = "; the grades that waited then go at once."
# a check's test result not sent to a paused destination: resume it, then check again
RESUME_TO_TEST = "resume_to_test"
# the LMS's missing grade scopes, as the diagnosis's check and as the LMS's refusal name them
_SCOPE_API = (
    "Enable Assignment and Grade Services for gradesync's registration in the LMS (the score "
    "and line item scopes), then check the destination "
    "(`POST /api/v1/destinations/{destination}/check`)."
)
_SCOPE_CONSOLE = (
    "Enable Assignment and Grade Services for gradesync's registration in the LMS (the score "
    "and line item scopes), then check the destination (its Check button on the Destinations "
    "page)."
)
# an LTI 1.1 consumer's settings gradesync cannot send with, at the command line
_CONSUMER_CLI = (
    "Fix the LTI 1.1 consumer's settings (`gradesync lti11 add-consumer --id {destination}` "
    "with its --key and --allowed-host, and --generate-secret for a new secret; "
    "docs/lti11.md), then resume it (`gradesync destinations resume {destination}`)."
)
# reason codes whose adapters worded the remedy for no reader in particular, in rows stored as
# words before their remedy was held as a code: each reader, the command line's included,
# reads its own words in place of the whole remedy
NEUTRAL = frozenset({"bad_configuration"})
FOR_READERS: dict[Reader, dict[str, str]] = {
    Reader.CLI: {
        "bad_configuration": _CONSUMER_CLI,
    },
    Reader.API: {
        RESUME: "Resume it once what paused it is settled "
        "(`POST /api/v1/destinations/{destination}/resume`)" + RESUMED,
        RESUME_TO_TEST: "Resume it once what paused it is settled "
        "(`POST /api/v1/destinations/{destination}/resume`), then check it again with "
        "`send_test`.",
        "destination_ready": "Fix the cause, then resume it "
        "(`POST /api/v1/destinations/{destination}/resume`).",
        "rate_limit": "Otherwise raise or clear its rate limit "
        "(`PATCH /api/v1/destinations/{destination}/limits` with `rate_per_second`, `null` to "
        "clear it): the grades waiting then go at the new pace at once.",
        _SIS_CLASS: "Map the course to its SIS class "
        "(`PUT /api/v1/sis/connections/{destination}/classes/{course}` with its `class_id` and "
        "`school_id`). Then tick 'Sync to SIS' for the activities whose grades belong in the "
        "SIS (`PUT /api/v1/sis/connections/{destination}/selection`).",
        PENDING_STALLED: "Ask whoever runs gradesync to check that its workers are running and "
        "what their logs say: `GET /readyz` answers 503 while the database cannot be reached "
        "or its schema is not current, which stops them too, and "
        "`gradesync_results_oldest_pending_age_seconds` in `GET /metrics` grows while nothing "
        "is sent. The grade goes once one sends again.",
        "learners_delivered": "Diagnose one of the learners listed for the exact cause "
        "(`GET /api/v1/activities/{activity}/learners/PERSON_ID/diagnosis`).",
        _SELECT: "Tick 'Sync to SIS' for it "
        "(`PUT /api/v1/sis/connections/{destination}/selection` with its id in `activity_ids`).",
        _OTHERS: _OTHERS_SETTLED + "(`PUT /api/v1/sis/connections/{destination}/selection` "
        "with its id in `activity_ids`): its grades are sent.",
        _POST: "Post its grades "
        "(`POST /api/v1/sis/connections/{destination}/courses/{course}/post` with its id in "
        "`activity_ids`).",
        MATCH_SIS_STUDENTS: "Match the course's learners to the SIS's students by their SIS ids "
        "(`POST /api/v1/sis/connections/{destination}/courses/{course}/students`); the "
        "course's next sync matches them too (`POST /api/v1/courses/{course}/sync`).",
        RELINK_SIS_STUDENTS: "Link the course's learners to the SIS's students by their "
        "SIS ids (`POST /api/v1/sis/connections/{destination}/courses/{course}/students`; a "
        "student picked by hand is kept).",
        GIVE_SIS_ID: "Give the learner their SIS id (`PUT /api/v1/people/{person}` with "
        "`sis_id`, or in the people you ingest): the course's next sync matches them to that "
        "SIS student. Or link them to it by hand "
        "(`PUT /api/v1/sis/connections/{destination}/students/{person}` with its `student_id`).",
        "grade_scope": _SCOPE_API,
        "no_grade_scope": _SCOPE_API,
        "matched_in_sis": "Link the learner to the student sourcedId the SIS has "
        "(`PUT /api/v1/sis/connections/{destination}/students/{person}` with its "
        "`student_id`).",
        _CATEGORY: "Align the group to one of the SIS's categories "
        "(`PUT /api/v1/sis/connections/{destination}/alignments/{group}` with its "
        "`category_id`, and `course_id` for one course only; "
        "`GET /api/v1/sis/connections/{destination}/categories` lists them).",
        _NO_SCHOOL: "Map the course to its class again with the class's school "
        "(`PUT /api/v1/sis/connections/{destination}/classes/{course}` with its `class_id` and "
        "`school_id`).",
        _SIS_CREDENTIALS: "Check the SIS client id and secret "
        "(`PUT /api/v1/sis/connections/{destination}` with `client_id` and `client_secret`), "
        "then check the connection (`POST /api/v1/sis/connections/{destination}/check`).",
        _ALIGN_GROUPS: "Align each activity group to its SIS category sourcedId "
        "(`PUT /api/v1/sis/connections/{destination}/alignments/{group}` with its "
        "`category_id`), or have groups name them (`profile.category_match` `id`, "
        "`PUT /api/v1/sis/connections/{destination}`).",
        _NO_GROUP: "Set the connection's default category, the group activities without one "
        "count as, aligned or matched like any other "
        "(`PUT /api/v1/sis/connections/{destination}` with `profile.default_category`), or give "
        "the activity a group.",
        # an LMS's refusal (diagnosis.REMOTE_CAUSES) or a SIS's (its adapters): one wording
        "bad_credentials": "Check the credentials gradesync uses there: at an LMS the client "
        "id, the deployment id and that the LMS uses gradesync's JWKS URL; at a SIS its client "
        "id and secret (`PUT /api/v1/sis/connections/{destination}` with `client_id` and "
        "`client_secret`). Then check the destination "
        "(`POST /api/v1/destinations/{destination}/check`).",
        # an LTI 1.1 consumer's settings gradesync cannot send with (adapters.destinations.lti11)
        "bad_configuration": "Fix the LTI 1.1 consumer's settings "
        "(`PUT /api/v1/lti11/consumers/{destination}` with its `consumer_key` and "
        "`allowed_hosts`, and `consumer_secret` to change the secret; docs/lti11.md), then "
        "resume it (`POST /api/v1/destinations/{destination}/resume`).",
    },
    Reader.CONSOLE: {
        RESUME: "Resume it once what paused it is settled (its Resume button on the "
        "Destinations page)" + RESUMED,
        # the console's Check sends no test result: the API's check or the command line does
        RESUME_TO_TEST: "Resume it once what paused it is settled (its Resume button on the "
        "Destinations page), then send the test result again (`POST "
        "/api/v1/destinations/{destination}/check` with `send_test`, or `destinations check "
        "--send-test` at gradesync's command line).",
        "destination_ready": "Fix the cause, then resume it (its Resume button on the "
        "Destinations page).",
        # the console shows no limits: who changes them, and where
        "rate_limit": "Otherwise raise or clear its rate limit: an administrator with an API "
        "key does (`PATCH /api/v1/destinations/{destination}/limits`), or whoever runs "
        "gradesync at its command line (`destinations limits`; docs/operations.md). The "
        "grades waiting then go at the new pace at once.",
        _SIS_CLASS: "Map the course to its SIS class on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Class and students), then tick "
        "'Sync to SIS' there for the activities whose grades belong in the SIS.",
        PENDING_STALLED: "Ask whoever runs gradesync to check that its workers are running and "
        "what their logs say (the Dashboard shows how many grades wait and since when). The "
        "grade goes once one sends again.",
        _SELECT: "Tick 'Sync to SIS' for it on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Sync to SIS and validation).",
        _OTHERS: _OTHERS_SETTLED + "on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Sync to SIS and validation): its grades "
        "are sent.",
        _POST: "Post its grades (Post grades on the course's SIS passback page, "
        "/console/sis/{destination}/courses/{course}).",
        MATCH_SIS_STUDENTS: "Match the course's learners to the SIS's students by their SIS "
        "ids (Link learners by their SIS ids on the course's SIS passback page, "
        "/console/sis/{destination}/courses/{course}, Class and students); the course's next "
        "sync matches them too.",
        RELINK_SIS_STUDENTS: "Link the course's learners to the SIS's students by their "
        "SIS ids (Link learners by their SIS ids on the course's SIS passback page, "
        "/console/sis/{destination}/courses/{course}, Class and students; a student picked by "
        "hand is kept).",
        GIVE_SIS_ID: "Link the learner to their SIS student on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Class and students: the learner's row "
        "under Students), or give them their SIS id where gradesync gets its people (the "
        "`sis_id` of `PUT /api/v1/people/{person}` or of an ingest): the course's next sync "
        "then matches them.",
        "grade_scope": _SCOPE_CONSOLE,
        "no_grade_scope": _SCOPE_CONSOLE,
        "matched_in_sis": "Link the learner to the student sourcedId the SIS has on the "
        "course's SIS passback page (/console/sis/{destination}/courses/{course}, Class and "
        "students: the learner's row under Students).",
        _CATEGORY: "Align the group to one of the SIS's categories under Category alignment "
        "on the course's SIS passback page (/console/sis/{destination}/courses/{course}).",
        _NO_SCHOOL: "Map the class again with its school (SIS school sourcedId, under Change "
        "the SIS class on the course's SIS passback page, /console/sis/{destination}/courses/"
        "{course}).",
        _SIS_CREDENTIALS: "Check the SIS client id and secret on the connection's settings page "
        "(/console/sis/{destination}/edit), then check it again (Check connection on the SIS "
        "page).",
        _ALIGN_GROUPS: "Align each activity group under Category alignment on a course's SIS "
        "passback page (the SIS page lists the courses), or have groups name the SIS's "
        "category sourcedIds (Category match: id, on the connection's settings page, "
        "/console/sis/{destination}/edit).",
        _NO_GROUP: "Set Default category, the group activities without one count as, aligned "
        "or matched like any other, on the SIS connection's settings page "
        "(/console/sis/{destination}/edit), or give the activity a group.",
        "bad_credentials": "Check the credentials gradesync uses there: at an LMS the client "
        "id, the deployment id and that the LMS uses gradesync's JWKS URL; at a SIS its client "
        "id and secret (/console/sis/{destination}/edit, its settings page). Then check the "
        "destination (its Check button on the Destinations page).",
        # the Destinations page adds a consumer but changes none: what changes one, and who
        "bad_configuration": "Fix the LTI 1.1 consumer's settings: the Destinations page adds "
        "a consumer but does not change one, so an administrator with an API key changes them "
        "(`PUT /api/v1/lti11/consumers/{destination}`), or whoever runs gradesync does at its "
        "command line (`lti11 add-consumer`; docs/lti11.md). Then resume it (its Resume button "
        "on the Destinations page).",
    },
}
# what a template names that was not given: the reader fills it in
_UNKNOWN = {
    "destination": "DESTINATION_ID",
    "course": "COURSE_ID",
    "activity": "ACTIVITY_ID",
    "person": "PERSON_ID",
    "group": "GROUP",
    "sis_class": "CLASS_SOURCEDID",
}


def reason_group(code: str | None, category: str | None, config: Mapping[str, Any]) -> Group:
    """The activity group a stored reason of `code` is about, from the activity's `category`
    and its SIS connection's `config`, as the adapters resolved it when they refused: the
    activity's group, else the connection's default category (None: neither). Only a missing
    category's remedy names a group."""
    if code != _CATEGORY:
        return Unsaid.GROUP
    return group_of(category, configured_default_category(config))


def category_key(code: str | None, group: Group) -> str:
    """The key of a reason's words per reader: its code, but a missing category of an
    activity with no group (`group` None: no group and no default category) is fixed by the
    connection's default category, not an alignment."""
    if code == _CATEGORY and group is None:
        return _NO_GROUP
    return code or ""


def for_reader(
    code: str | None,
    text: str,
    reader: Reader,
    destination_id: str | None,
    *,
    course_id: str | None = None,
    activity_id: str | None = None,
    person_id: str | None = None,
    group: Group = Unsaid.GROUP,
) -> str:
    """A stored reason (its code and text: a ledger row's) as an administrator reading it
    over `reader` acts on it. A remedy stored as a code (`stored_text`) is worded for the
    reader from it, about the ids it holds (else those given). In a row stored as words, the
    remedy's sentences that name a command give way to the API's route or the console's
    action that does the same (by the reason's code, about the ids and the activity `group`
    given); the command line keeps the command, and so does a code with nothing in its
    place."""
    held = stored_reason(text)
    if not held.old:
        if held.fix is None:
            return held.said
        fix = held.fix.about(destination_id, course_id, activity_id)
        return f"{held.said}{SEPARATOR}{fix.words(reader)}"
    instead = FOR_READERS.get(reader, {}).get(category_key(code, group))
    if instead is None or not _reworded(code, text):
        return text
    ids = _held(
        reader,
        destination=destination_id,
        course=course_id,
        activity=activity_id,
        person=person_id,
        group=None if isinstance(group, Unsaid) else group,
    )
    return _replaced(code, text, instead.format(**ids))


def _held(reader: Reader, **given: str | None) -> dict[str, str]:
    """The ids a template names as `reader` holds them: a URL's path percent-encoded (a
    group's `/` too: the routes take it so), a command line's argument shell-quoted; one not
    given as its placeholder (`_UNKNOWN`)."""
    held = shlex.quote if reader is Reader.CLI else lambda v: quote(v, safe="")
    return {k: held(v) if v else _UNKNOWN[k] for k, v in given.items()}


def in_console(
    code: str | None,
    text: str,
    *,
    instructor: bool,
    destination_id: str | None,
    course_id: str | None = None,
    person_id: str | None = None,
    group: Group = Unsaid.GROUP,
) -> str:
    """The reason as a console user acts on it: an `instructor` reads who can do it
    (`for_instructor`), an administrator the console's action (`for_reader`)."""
    if instructor:
        return for_instructor(code, text, group=group)
    return for_reader(
        code,
        text,
        Reader.CONSOLE,
        destination_id,
        course_id=course_id,
        person_id=person_id,
        group=group,
    )


# the command line's words of a remedy held as a code (`Remedy`): its command, ids filled in,
# named before the console's way where both are given; every code here has words for every
# reader (tests/unit/test_remedies.py)
_CLI_WORDS: dict[str, str] = {
    RESUME: "Resume it once what paused it is settled (gradesync destinations resume "
    "{destination})" + RESUMED,
    RESUME_TO_TEST: "Resume it once what paused it is settled (gradesync destinations resume "
    "{destination}), then check it again with --send-test.",
    _SIS_CLASS: "gradesync sis map-class {destination} {course} CLASS_SOURCEDID "
    "--school SCHOOL_SOURCEDID",
    _NO_SCHOOL: "Map the class again with its school: gradesync sis map-class {destination} "
    "{course} {sis_class} --school SCHOOL_SOURCEDID",
    MATCH_SIS_STUDENTS: "Match the course's learners to the SIS's students by their SIS ids: "
    "gradesync sis map-students {destination} {course} (or Link learners by their SIS ids on "
    "the course's SIS passback page in the console); the course's next sync matches them too.",
    RELINK_SIS_STUDENTS: "Link the course's learners to the SIS's students by their SIS ids: "
    "gradesync sis map-students {destination} {course} (a student picked by hand is kept).",
    # the command line's own way first; a SIS id is given where gradesync gets its people
    GIVE_SIS_ID: "Link the learner to their SIS student: gradesync sis map-student "
    "{destination} {person} SOURCEDID. Or give them their SIS id where gradesync gets its "
    "people (the `sis_id` of `PUT /api/v1/people/{person}` or of an ingest): the course's next "
    "sync then matches them to that SIS student.",
    _SELECT: "Tick 'Sync to SIS' for it (gradesync sis select {destination} {activity}).",
    _OTHERS: _OTHERS_SETTLED + "(gradesync sis select {destination} {activity}): its grades "
    "are sent.",
    _POST: "Post its grades (gradesync sis post {destination} {course} --activity {activity}).",
    _CATEGORY: "Align the group to a SIS category: gradesync sis categories {destination} "
    "--align {group}={category_word} (or under Category alignment on the course's SIS page "
    "in the console).",
    _NO_GROUP: "Set the connection's default category: gradesync sis add {destination} "
    "--default-category GROUP (or Default category on its settings page in the console).",
    _SIS_CREDENTIALS: "Check the SIS client id and secret: gradesync sis add {destination} "
    "--client-id ID --client-secret SECRET",
    _ALIGN_GROUPS: "Align each group to a SIS category: gradesync sis categories {destination} "
    "--align GROUP={category_word} (or under Category alignment on a course's SIS page in the "
    "console).",
    "bad_configuration": _CONSUMER_CLI,
}

# a code with no words for its reader (a new adapter's, not yet worded): said plainly rather
# than raise while a failure is being built in the middle of a send
UNWORDED = "Check the destination's settings, then check it again: its check names what is wrong."


@dataclass(frozen=True, slots=True)
class Remedy:
    """What to do about a failure or a problem, held as a code (a key of the words tables)
    and the ids it is about, so that each reader's words are made once, from it (`words`),
    and never read back from another reader's. `group`: the activity group of a missing
    category (None: the activity has none, and no default category stands in);
    `category_word`: what the SIS calls a category's id (CATEGORY_ID, CATEGORY_SOURCEDID)."""

    code: str
    destination: str | None = None
    course: str | None = None
    activity: str | None = None
    group: str | None = None
    sis_class: str | None = None
    category_word: str = "CATEGORY_ID"
    person: str | None = None

    @property
    def key(self) -> str:
        return category_key(self.code, self.group)

    def about(
        self,
        destination: str | None = None,
        course: str | None = None,
        activity: str | None = None,
    ) -> Remedy:
        """The remedy with the ids it does not name taken from those given (its reader's:
        a diagnosis's course, a ledger row's destination)."""
        given = {"destination": destination, "course": course, "activity": activity}
        missing = {k: v for k, v in given.items() if v is not None and getattr(self, k) is None}
        return replace(self, **missing) if missing else self

    def words(self, reader: Reader) -> str:
        """The remedy as an administrator reading over `reader` does it: the command line's
        command, the API's route, the console's page or button."""
        table = _CLI_WORDS if reader is Reader.CLI else FOR_READERS.get(reader, {})
        template = table.get(self.key) or _CLI_WORDS.get(self.key, UNWORDED)
        ids = _held(
            reader,
            destination=self.destination,
            course=self.course,
            activity=self.activity,
            group=self.group,
            sis_class=self.sis_class,
            person=self.person,
        )
        return template.format(**ids, category_word=self.category_word)

    def for_instructor(self) -> str:
        """The remedy as an instructor acts on it: who can do it, and that they can ask."""
        return FOR_INSTRUCTORS.get(self.key, GENERAL)


@dataclass(frozen=True, slots=True)
class RemedyProblem(FieldProblem):
    """A problem whose remedy is held as a code (`fix`): `said` is what is wrong, and
    `message` (what any reader that does not word it reads) adds the command line's words."""

    said: str = ""
    fix: Remedy | None = None

    @classmethod
    def of(cls, field: str, rule: str, said: str, fix: Remedy) -> RemedyProblem:
        return cls(field, rule, f"{said}{SEPARATOR}{fix.words(Reader.CLI)}", said, fix)

    def read_over(self, reader: Reader) -> FieldProblem:
        """The problem with its remedy in the words of `reader`."""
        if self.fix is None:
            return self
        return FieldProblem(
            self.field, self.rule, f"{self.said}{SEPARATOR}{self.fix.words(reader)}"
        )

    def for_instructor(self) -> FieldProblem:
        if self.fix is None:
            return self
        return FieldProblem(
            self.field, self.rule, f"{self.said}{SEPARATOR}{self.fix.for_instructor()}"
        )


def lti11_column_remedy(*activity_ids: str) -> str:
    """LTI 1.1 has no Deep Linking and cannot create a column: the LMS's graded link makes it,
    and its first launch tells gradesync which activity it is (docs/lti11.md)."""
    if len(activity_ids) == 1:
        return (
            "Add the activity to the LMS course as a graded LTI link whose activity_id custom "
            f"parameter is {activity_ids[0]!r}, and open it once; LTI 1.1 cannot create "
            "gradebook columns."
        )
    named = ", ".join(repr(a) for a in activity_ids)
    return (
        "Add each activity to the LMS course as a graded LTI link whose activity_id custom "
        f"parameter is its id ({named}), and open each once; LTI 1.1 cannot create gradebook "
        "columns."
    )


# --- a reason as the ledger stores it ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredReason:
    """A ledger row's reason as stored (`stored_text`): what happened (`said`, in words every
    reader reads alike) and its remedy held as a code with the ids it is about (`fix`), each
    reader's words made from it when the row is read. A row stored as words (`old`: the
    reason's whole text, a remedy in the command line's words included, as rows were stored
    before) is read as words (`for_reader`)."""

    said: str
    fix: Remedy | None = None
    old: bool = False


_FACTS = tuple(f.name for f in fields(Remedy))  # what a stored remedy holds
_ADDED_FACTS = frozenset({"person"})  # stored only when held (`stored_text`)


def stored_text(said: str, fix: Remedy | None = None) -> str:
    """What a ledger row stores for a reason: its words when no remedy is held as a code,
    else (or when the words could be taken for it) the stored form, JSON of what happened
    and the remedy's code and ids, never any reader's words for it."""
    if fix is None and not said.startswith("{"):
        return said
    # a fact added since remedies were first stored is there only when held: a remedy
    # stored before reads the same, so no row is rewritten for it
    facts = (
        None
        if fix is None
        else {k: v for k in _FACTS if (v := getattr(fix, k)) is not None or k not in _ADDED_FACTS}
    )
    return json.dumps({"said": said, "fix": facts}, ensure_ascii=False, sort_keys=True)


def stored_reason(text: str) -> StoredReason:
    """A ledger row's reason text read back: the stored form (`stored_text`), or words."""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("said"), str):
            facts = data.get("fix")
            return StoredReason(data["said"], _remedy(facts) if isinstance(facts, dict) else None)
    return StoredReason(text, old=True)


def _remedy(facts: Mapping[str, Any]) -> Remedy | None:
    code = facts.get("code")
    if not isinstance(code, str):
        return None
    ids = {k: v for k, v in facts.items() if k in _FACTS and k != "code" and isinstance(v, str)}
    return replace(Remedy(code), **ids)


def said_of(text: str) -> str:
    """What a stored reason says happened, naming no command (a diagnosis's evidence quotes
    it; its remedy is worded for the reader apart): a row stored as words leaves out its
    remedy's sentences that name one."""
    held = stored_reason(text)
    return without_commands(held.said) if held.old else held.said


def remedy_of(
    text: str | None, destination_id: str | None = None
) -> tuple[str | None, Remedy | None]:
    """The remedy of a stored reason that `said_of` leaves out, for a diagnosis's check to
    word for its reader: (the command line's words, the remedy held as a code, about
    `destination_id` where it names none); a row stored as words gives its remedy naming a
    command, reworded by the check's reason code (`for_reader`), and no code. (None, None):
    nothing is left out."""
    if not text:
        return None, None
    held = stored_reason(text)
    if held.fix is not None:
        fix = held.fix.about(destination_id)
        return fix.words(Reader.CLI), fix
    if held.old and names_command(text):
        _, sep, remedy = text.rpartition(SEPARATOR)
        return (remedy if sep else text), None
    return None, None
