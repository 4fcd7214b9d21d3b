"""A reason's remedy in words the reader can act on.

Adapters write a refusal's remedy for whoever runs gradesync: often a command
(`gradesync sis map-class ...`, `gradesync lti11 add-consumer`). An instructor reading the
course grid in the console can run none of them, so they read instead what an administrator
does and that they can ask for it. An administrator reading over the HTTP API or in the
console reads, where there is one, the API's route or the console's action that does it
(`for_reader`). A reason's text is "what happened — remedy" (the delivery code joins them
so); only a remedy naming a command is replaced, or, for a code whose adapter words its remedy
for no reader (`NEUTRAL`: it is repeated in a pause reason, which every reader reads), the
whole remedy, at the command line too.
"""

from __future__ import annotations

import ast
import re
import shlex
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
    # a missing category of an activity with no group (`category_key`)
    "no_default_category": f"{ASK} set the default category of this SIS connection (the group "
    "of activities without one), or give this activity a group.",
}
GENERAL = (
    f"{ASK} fix this (it needs their tools); tell them the learner, the activity and this message."
)


def category_remedy(destination_id: str, group: str | None, category_word: str) -> str:
    """What the command line does about an activity group no SIS category is found for: align
    the group, or (an activity with no group, which no alignment names) set the connection's
    default category, the group such activities count as. `category_word`: what the SIS calls
    a category's id (CATEGORY_ID, CATEGORY_SOURCEDID)."""
    if group is None:
        return (
            "Set the connection's default category (Default category on its settings page "
            f"in the console), or: gradesync sis add {destination_id} --default-category GROUP"
        )
    return (
        "Align the group under Category alignment on the course's SIS page in the console, "
        f"or: gradesync sis categories {destination_id} --align GROUP={category_word}"
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


def without_commands(text: str) -> str:
    """The reason with its remedy's sentences that name a command left out, for words every
    reader reads alike (a destination's pause reason): what happened stays, and the remedy
    is the reader's own (`for_reader`)."""
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


def for_instructor(code: str | None, text: str) -> str:
    """The reason as an instructor can act on it: the remedy's sentences that name a command
    (or a `NEUTRAL` code's remedy) give way to who can do it (by the reason's code); any
    other text is kept as it is."""
    if not _reworded(code, text):
        return text
    return _replaced(code, text, FOR_INSTRUCTORS.get(category_key(code, text), GENERAL))


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
# a missing category of an activity with no group: no alignment names it (`category_key`)
_NO_GROUP = "no_default_category"
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
# reason codes whose adapters word the remedy for no reader in particular (it is stored with
# the reason, and a destination's pause reason repeats it to every reader): each reader,
# the command line's included, reads its own words in place of the whole remedy
NEUTRAL = frozenset({"bad_configuration"})
FOR_READERS: dict[Reader, dict[str, str]] = {
    Reader.CLI: {
        "bad_configuration": "Fix the LTI 1.1 consumer's settings (`gradesync lti11 "
        "add-consumer --id {destination}` with its --key and --allowed-host, and "
        "--generate-secret for a new secret; docs/lti11.md), then resume it "
        "(`gradesync destinations resume {destination}`).",
    },
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
}
# how a SIS's refusal names the activity group (its adapters: `Activity group 'Quizzes': ...`)
_GROUP = re.compile(r"Activity group ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


# how they say an activity has no group (`Activity group (none): ...`)
_NO_GROUP_SAID = re.compile(r"Activity group \(none\)")


def category_key(code: str | None, text: str) -> str:
    """The key of a reason's words per reader: its code, but a missing category of an
    activity with no group is fixed by the connection's default category, not an alignment."""
    if code == _CATEGORY and _NO_GROUP_SAID.search(text):
        return _NO_GROUP
    return code or ""


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
    instead = FOR_READERS.get(reader, {}).get(category_key(code, text))
    if instead is None or not _reworded(code, text):
        return text
    given = {
        "destination": destination_id,
        "course": course_id,
        "activity": activity_id,
        "person": person_id,
        "group": group_named(text),
    }
    # a URL's path holds an id percent-encoded (a group's `/` too: the routes take it so), a
    # command line's argument shell-quoted
    held = shlex.quote if reader is Reader.CLI else lambda v: quote(v, safe="")
    ids = {k: held(v) if v else _UNKNOWN[k] for k, v in given.items()}
    return _replaced(code, text, instead.format(**ids))


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
