"""A reason's remedy in words the reader can act on.

Adapters write a refusal's remedy for whoever runs gradesync: often a command
(`gradesync sis map-class ...`, `gradesync lti11 add-consumer`). An instructor reading the
course grid in the console can run none of them, so they read instead what an administrator
does and that they can ask for it. An administrator reading over the HTTP API or in the
console reads, where there is one, the API's route or the console's action that does it
(`for_reader`). A reason's text is "what happened — remedy" (the delivery code joins them
so); only a remedy naming a command is replaced.
"""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from urllib.parse import quote

from gradesync.domain.passback import PassbackRule

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
SEPARATOR = " — "  # between what happened and the remedy (delivery.failures.reason_of)

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
    "grade_scope": _GRADE_SCOPE,
    "matched_in_sis": f"{ASK} link the learner to their student in the SIS.",
    # a grade pending far longer than a send takes (diagnosis.destination_checks)
    PENDING_STALLED: f"{ASK} check that gradesync is sending grades: this one should have "
    "reached the gradebook within seconds. Tell them the learner, the activity and this message.",
    PassbackRule.CATEGORY_MISSING.value: f"{ASK} align this activity's group with a category "
    "of the SIS.",
}
GENERAL = (
    f"{ASK} fix this (it needs their tools); tell them the learner, the activity and this message."
)


def names_command(text: str) -> bool:
    """Whether the text names a gradesync command a person would type."""
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


def for_instructor(code: str | None, text: str) -> str:
    """The reason as an instructor can act on it: the remedy's sentences that name a command
    give way to who can do it (by the reason's code); any other text is kept as it is."""
    if not names_command(text):
        return text
    return _commands_replaced(text, FOR_INSTRUCTORS.get(code or "", GENERAL))


class Reader(StrEnum):
    """Where an administrator reads a remedy, and so how they act on it."""

    CLI = "cli"  # the command line: the commands as they are
    API = "api"  # the HTTP API (a person or a program): its routes
    CONSOLE = "console"  # the web console: its pages and buttons


# per reader and reason code, what a remedy's command is where that reader is ({destination},
# {course}, {activity}, {person}: their ids as a URL's path holds them; {group}: the activity
# group the reason names, `group_named`); a code missing keeps its command
_SIS_CLASS = PassbackRule.CLASS_NOT_MAPPED.value
_CATEGORY = PassbackRule.CATEGORY_MISSING.value
_SELECT, _POST = PassbackRule.NOT_SELECTED.value, PassbackRule.NOT_POSTED.value
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
FOR_READERS: dict[Reader, dict[str, str]] = {
    Reader.API: {
        "destination_ready": "Fix the cause, then resume it "
        "(`POST /api/v1/destinations/{destination}/resume`).",
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
        _POST: "Post its grades "
        "(`POST /api/v1/sis/connections/{destination}/courses/{course}/post` with its id in "
        "`activity_ids`).",
        "grade_scope": _SCOPE_API,
        "no_grade_scope": _SCOPE_API,
        "matched_in_sis": "Link the learner to the student sourcedId the SIS has "
        "(`PUT /api/v1/sis/connections/{destination}/students/{person}` with its "
        "`student_id`).",
        _CATEGORY: "Align the group to one of the SIS's categories "
        "(`PUT /api/v1/sis/connections/{destination}/alignments/{group}` with its "
        "`category_id`, and `course_id` for one course only; "
        "`GET /api/v1/sis/connections/{destination}/categories` lists them).",
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
        "destination_ready": "Fix the cause, then resume it (its Resume button on the "
        "Destinations page).",
        _SIS_CLASS: "Map the course to its SIS class on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Class and students), then tick "
        "'Sync to SIS' there for the activities whose grades belong in the SIS.",
        PENDING_STALLED: "Ask whoever runs gradesync to check that its workers are running and "
        "what their logs say (the Dashboard shows how many grades wait and since when). The "
        "grade goes once one sends again.",
        _SELECT: "Tick 'Sync to SIS' for it on the course's SIS passback page "
        "(/console/sis/{destination}/courses/{course}, Sync to SIS and validation).",
        _POST: "Post its grades (Post grades on the course's SIS passback page, "
        "/console/sis/{destination}/courses/{course}).",
        "grade_scope": _SCOPE_CONSOLE,
        "no_grade_scope": _SCOPE_CONSOLE,
        "matched_in_sis": "Link the learner to the student sourcedId the SIS has on the "
        "course's SIS passback page (/console/sis/{destination}/courses/{course}, Class and "
        "students: the learner's row under Students).",
        _CATEGORY: "Align the group to one of the SIS's categories under Category alignment "
        "on the course's SIS passback page (/console/sis/{destination}/courses/{course}).",
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
}
# how a SIS's refusal names the activity group (its adapters: `Activity group 'Quizzes': ...`)
_GROUP = re.compile(r"Activity group ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def group_named(text: str) -> str | None:
    """The activity group a reason names, as its adapter quoted it (None: it names none)."""
    found = _GROUP.search(text)
    if found is None:
        return None
    try:
        group = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return None
    return group if isinstance(group, str) else None


def for_reader(
    code: str | None,
    text: str,
    reader: Reader,
    destination_id: str | None,
    *,
    course_id: str | None = None,
    activity_id: str | None = None,
    person_id: str | None = None,
) -> str:
    """The reason as an administrator reading it over `reader` acts on it: the remedy's
    sentences that name a command give way to the API's route or the console's action that
    does the same (by the reason's code, about the ids given and the activity group the text
    names); the command line keeps the command, and so does a code with nothing in its
    place."""
    instead = FOR_READERS.get(reader, {}).get(code or "")
    if instead is None or not names_command(text):
        return text
    given = {
        "destination": destination_id,
        "course": course_id,
        "activity": activity_id,
        "person": person_id,
        "group": group_named(text),
    }
    ids = {k: quote(v, safe="") if v else _UNKNOWN[k] for k, v in given.items()}
    return _commands_replaced(text, instead.format(**ids))


def in_console(
    code: str | None,
    text: str,
    *,
    instructor: bool,
    destination_id: str | None,
    course_id: str | None = None,
    person_id: str | None = None,
) -> str:
    """The reason as a console user acts on it: an `instructor` reads who can do it
    (`for_instructor`), an administrator the console's action (`for_reader`)."""
    if instructor:
        return for_instructor(code, text)
    return for_reader(
        code, text, Reader.CONSOLE, destination_id, course_id=course_id, person_id=person_id
    )
