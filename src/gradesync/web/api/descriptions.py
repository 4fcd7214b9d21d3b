"""Words for the OpenAPI document (`/openapi.json`, `/docs`, `/redoc`): what each field,
parameter and operation means, and examples of the common calls.

Fields mean the same wherever their name appears (`course_id` is always gradesync's id of the
course), so they are described once, by name; the few names whose meaning depends on the
schema are described per schema. A description written on a model field or an endpoint's
docstring wins over these. `tests/api` checks that nothing is left undescribed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

_ZONED = "An ISO 8601 date-time with its zone (e.g. `2025-03-01T10:00:00Z`)."

# By name, wherever the name appears.
FIELDS: dict[str, str] = {
    # ids
    "course_id": "gradesync's id of the course: the id your courseware gave it when posting "
    "it (not the LMS's own id).",
    "activity_id": "gradesync's id of the activity (assignment, quiz, lab...), as posted.",
    "person_id": "gradesync's id of the learner, as posted.",
    "destination_id": "The destination's id (an LMS platform or a SIS connection). Absent or "
    "null: every destination of the tenant.",
    "activity_ids": "Only these activities. Empty: every activity in scope.",
    "course_ids": "Only these courses. Empty: every course.",
    "person_ids": "Only these learners. Empty: every learner in scope.",
    "source_event_id": "Your own id of the attempt. Posting the same id again is answered as a "
    "duplicate and changes nothing, so retries are safe.",
    "attempt_id": "gradesync's id of the stored attempt (null for a duplicate of an earlier post).",
    "run_id": "The sync run's id (`GET /api/v1/runs/{run_id}`).",
    "schedule_id": "The schedule's id.",
    "section_id": "The course section the learner is in, when the course has sections.",
    "new_section": "true: the `section_id` is a section none of the course's enrollments names "
    "yet (its learners are to come). false (the default): such a section is refused "
    "`unknown_section`, as a likely typo.",
    "sis_id": "The learner's id in the student information system (OneRoster sourcedId).",
    "class_id": "The class's sourcedId in the SIS.",
    "school_id": "The school's sourcedId in the SIS.",
    "student_id": "The student's sourcedId in the SIS.",
    "category_id": "The SIS grading category's sourcedId.",
    "client_id": "The OAuth 2 client id gradesync uses at the SIS.",
    # course and activity facts
    "title": "The name people see (in the LMS gradebook column for an activity).",
    "time_zone": "IANA time zone (e.g. `Europe/Paris`): due dates and local times are read in it.",
    "starts_at": "When the course starts. " + _ZONED,
    "ends_at": "When the course ends; no grade is sent for it after that. " + _ZONED,
    "sync_enabled": "false: nothing of this is sent to any destination.",
    "policy": "Grade policy for this level; omitted knobs inherit (tenant, then course, then "
    "activity). Sent, it replaces the whole layer (`PATCH .../policy` changes one knob); left "
    "out, the stored layer is kept.",
    "points_possible": "The most points the activity gives (the column's maximum).",
    "due_at": "When the work is due; with `past_due_zeros`, missing work counts 0 after it. "
    + _ZONED,
    "category": "The activity's group (e.g. `Homework`), aligned to a SIS category.",
    "published": "false: not visible to learners yet, so not sent.",
    "assigned": "false: not assigned to these learners (with `past_due_zeros=assigned_only`, no "
    "zero for it).",
    "name": "A person's or a connection's display name.",
    "email": "The learner's e-mail address (shown to instructors, never sent to destinations).",
    "role": "The person's role in the course (`learner`, `instructor`, `teaching_assistant`, "
    "`observer`, `administrator`); only learners get grades.",
    # attempts
    "score_given": "Points earned. Null with `completed`: a completion without a score.",
    "score_maximum": "Points possible for this attempt (the activity's points when absent).",
    "completed_at": "When the learner submitted. " + _ZONED,
    "started_at": "When the learner started. " + _ZONED,
    "completed": "false: still in progress (not counted yet).",
    "comment": "A comment for the learner, sent where the destination accepts comments.",
    "late": "Submitted after the due date (policy may still count it).",
    "excused": "The learner is excused: no zero for missing work.",
    "attempts": "Attempts, each with its own `source_event_id`.",
    # ingest
    "courses": "Courses to store or update.",
    "activities": "Activities to store or update.",
    "people": "People to store or update.",
    "enrollments": "Who is in which course, with which role.",
    "overrides": "Per-learner due dates.",
    "changed": "How many of each kind of fact were new or different, by kind.",
    "unchanged": "How many of each kind were posted as they already were, by kind.",
    "recorded": "Attempts stored.",
    "duplicates": "Attempts already stored earlier (same `source_event_id`): ignored.",
    "dirty_keys": "(activity, learner) pairs whose grade is recomputed because of this post.",
    "stored": "Always true: the answer is sent only once everything is committed.",
    "duplicate": "true: this `source_event_id` was stored earlier; nothing changed.",
    # policy
    "attempt_selection": "Which attempt counts: `highest`, `latest`, `first` or `average`.",
    "extra_credit": "`cap`: more than the maximum is sent as the maximum; `pass_through`: sent "
    "as is where the destination accepts it.",
    "past_due_zeros": "Missing work after the due date counts 0: `off`, `on`, or `assigned_only`.",
    "grace_period_minutes": "Minutes after the due date before a missing attempt counts 0.",
    "minimum_points": "Points never sent below this (a floor), for attempts that count.",
    "name_rule": "A column title the destination cannot take: `shorten` it, or `refuse` to sync "
    "the activity with a clear error.",
    "keep_lms_edits": "true: a grade an instructor changed in the LMS is left as it is.",
    "roster_match": "Tenant only (`PATCH /tenant/policy`): how an LMS roster member (NRPS) is "
    "matched to a learner who never launched: `lms_user_id`, `sis_id` (the default) or "
    "`email`. A course or activity that gives it is refused (422, `tenant_only`).",
    # runs
    "trigger": "What asked for the run: `manual` (recompute and send what differs), `resync` "
    '(the same, on a person\'s "Sync now"), `remaster` (resend everything, column details '
    "included), `schedule`, `auto`, `repair`.",
    "actor": "Who asked: a console user, an API key (`api-key:<name>`), a schedule or the engine.",
    "stage": "Where the run is: `queued`, then its working stages, then `finished`.",
    "outcome": "How the run ended: `succeeded`, `partly_failed` (some results refused or still "
    "failing) or `failed`; null until finished.",
    "counts": "The run's scope by kind (`sent`, `unchanged`, `pending`, `rejected`, "
    "`skipped`, ...; docs/operations.md). `sent`: the scope's results delivered while the run "
    "ran, whoever sent them, so runs at once over the same results each count them (the "
    "message names the others).",
    "created_at": "When it was created. " + _ZONED,
    "finished_at": "When the run finished. " + _ZONED,
    "stages": "Each stage the run went through and when it started, each once per attempt: a "
    "run stopped and resumed says so once (`resumed`), then its next attempt's stages.",
    "joined": "true: a run for the same scope was already queued or going, and was joined "
    "instead of starting another.",
    "runs": "Runs, newest first.",
    "remaster": "true: resend every result, column details included, even if unchanged.",
    # ledger and grades
    "state": "Where the result stands: `pending`, `delivered`, `retrying`, `rejected` or "
    "`skipped`.",
    "desired": "The result gradesync wants in the destination (score, maximum, comment, "
    "status). `excused` is the flag sent (a SIS); `learner_excused`, present and true only for "
    "an excused learner, says so where the destination has no excused state (an LMS: "
    "`excused` is false there and no score is sent).",
    "in_sync": "true: the destination holds what is desired.",
    "delivered_at": "When the destination last acknowledged a result. " + _ZONED,
    "tries": "Failed sends in a row (reset on success).",
    "next_attempt_at": "When the next try is due (retrying only). " + _ZONED,
    "reason_code": "Why it is rejected, retrying or skipped, as a code (e.g. `unknown_user`).",
    "reason_text": "The same in words, with what a person should do about it.",
    "remote_status": "The destination's HTTP status in its last answer.",
    "remote_message": "The destination's own words in its last answer.",
    "updated_at": "When this last changed. " + _ZONED,
    "destinations": "By destination id.",
    "ledger": "Results per delivery state for this destination.",
    # destinations
    "profile": "The platform's quirks (`generic`, `canvas`, `moodle`, `brightspace`, "
    "`blackboard`, `schoology`).",
    "config": "The destination's settings (secrets are never shown).",
    "enabled": "false: paused by a person until resumed.",
    "paused_until": "Paused until then (the remote's Retry-After, the circuit breaker, a "
    "misconfiguration, or a timed pause). " + _ZONED,
    "pause_reason": "Why the destination is paused.",
    "reason": "Why it is paused (shown in the console and in metrics).",
    "until": "Pause until then; absent: until resumed. " + _ZONED,
    # SIS connections
    "base_url": "The SIS's OneRoster base URL (ending in `/ims/oneroster/...`).",
    "token_url": "The SIS's OAuth 2 token URL.",
    "scopes": "OAuth 2 scopes to ask for; absent: the OneRoster gradebook scopes.",
    "file_based": "true: no REST API; grades are exported as OneRoster CSV files instead.",
    "term_start": "First day of the term (YYYY-MM-DD).",
    "term_end": "Last day of the term (YYYY-MM-DD).",
    "selected": "true: these activities are passed back to the SIS; false: they are not.",
    "mode": "`bulk`: every result; `delta`: only what changed since `since`.",
    "since": "With `delta`: results changed after this moment. " + _ZONED,
    # schedules
    "spec": "When it runs: `15m`, `2h` (interval); `01:30` (daily); `mon,wed 07:00` (weekly); "
    "`0 7 * * 1-5` (cron).",
    "first_run_at": "The first run happens no earlier than this. " + _ZONED,
    "posted_by": "Who created the schedule.",
    "next_run_at": "When it runs next (null while paused). " + _ZONED,
    "last_run_at": "When it last ran. " + _ZONED,
    "paused": "true: the schedule does not run until resumed.",
    "paused_at": "When it was paused. " + _ZONED,
    "upcoming": "The next few times it will run.",
    "description": 'The schedule in words (e.g. "every weekday at 07:00 Europe/Paris").',
    "action": "What happened: `created`, `edited`, `paused`, `resumed`, `ran`, `missed`...",
    "message": "What happened, in words.",
    "slot_at": "The scheduled time this entry is about. " + _ZONED,
    "missed": "Runs that were due while gradesync was down and were folded into this one.",
    "count": "How many upcoming times to show.",
    # repair
    "marked": "Results marked to be sent again.",
    "skipped": "Results left as they are (nothing to send).",
    "keys": "(activity, learner) pairs the repair covers.",
    "run": "The run this started or joined.",
}

_SCHEDULE_KIND = "`interval`, `daily`, `weekly` or `cron`."
_SCHEDULE_TRIGGER = "`schedule` (send what differs) or `remaster` (resend everything)."
# what may be asked for; `schedule`, `auto` and `repair` runs are gradesync's own
_REQUESTED_TRIGGER = (
    "`manual` (recompute and send what differs), `resync` (the same, on a person's "
    '"Sync now") or `remaster` (resend everything, column details included).'
)

_DESTINATION = {
    "id": "The destination's id.",
    "kind": "The protocol: `lti13_ags`, `lti11_outcomes`, `oneroster_rest` or `oneroster_csv`.",
    "name": "The destination's display name.",
}

# Names whose meaning depends on the schema.
BY_SCHEMA: dict[str, dict[str, str]] = {
    "CourseIn": {"id": "Your id of the course (gradesync uses it as is)."},
    "CourseOut": {"id": "The course's id."},
    "ActivityIn": {"id": "Your id of the activity (gradesync uses it as is)."},
    "ActivityOut": {"id": "The activity's id."},
    "PersonIn": {"id": "Your id of the person (gradesync uses it as is)."},
    "RunOut": {
        "id": "The run's id.",
        "course_id": "The course the run covers (null: every course).",
        "destination_id": "The destination the run sends to (null: every destination).",
        "activity_ids": "The activities the run covers (empty: every activity).",
        "started_at": "When a worker started the run. " + _ZONED,
        "message": "What happened, in words (why it failed, what was refused).",
    },
    "ScheduleOut": {
        "id": "The schedule's id.",
        "kind": _SCHEDULE_KIND,
        "trigger": _SCHEDULE_TRIGGER,
        "created_at": "When the schedule was created. " + _ZONED,
    },
    "SyncIn": {"trigger": _REQUESTED_TRIGGER},
    "CourseSyncIn": {"trigger": _REQUESTED_TRIGGER},
    "ScheduleIn": {"kind": _SCHEDULE_KIND},
    "ScheduleEditIn": {
        "kind": _SCHEDULE_KIND,
        "spec": FIELDS["spec"],
        "time_zone": "IANA zone for daily, weekly and cron schedules.",
        "trigger": _SCHEDULE_TRIGGER,
    },
    "PreviewIn": {"kind": _SCHEDULE_KIND},
    "PreviewOut": {"runs": "The next times the schedule would run."},
    "HistoryOut": {"at": "When it happened. " + _ZONED, "run": "The run it started or joined."},
    "StageOut": {
        "stage": "The stage's name, or `resumed`: the run was stopped (its worker stopped, "
        "or its database was lost) and taken up again at `at`; its note says why and by whom. "
        "The stages after it are the run's next attempt; a run that had computed its grades "
        "does not compute them again, so no `computing` follows its `resumed`.",
        "at": "When it started. " + _ZONED,
        "note": "What happened at this stage beyond its name, when anything did: for example "
        "that the worker running it stopped and another resumed it, or that results were "
        "carried over from an earlier run.",
        "attempt": "Which attempt of the run the stage belongs to: 1, then 2 from its first "
        "`resumed` on, and so on.",
    },
    "DestinationOut": _DESTINATION,
    "DestinationShownOut": _DESTINATION,
    "ConnectionIn": {
        "name": "The connection's display name. Absent: the current name, or the id for a new "
        "connection.",
        "file_based": FIELDS["file_based"] + " false: a OneRoster REST API. Absent: the current "
        "kind, or REST for a new connection.",
        "profile": "How the SIS behaves where OneRoster leaves it open: `name_max_length`, "
        "`due_date_required`, `due_date_inside_term`, `may_create_categories`, "
        "`category_match`, `default_category`, `concurrency`. `GET` answers them in "
        "`settings.profile`.",
    },
    "LearnerGradesOut": {
        "name": "The learner's name.",
        "note": "Set only when the tenant has no destination (LMS platform or SIS connection), "
        "so no grade of the learner is sent anywhere: says so; null otherwise.",
    },
    "GradeCellOut": {
        "state": "Where the result stands: `pending`, `delivered`, `retrying`, `rejected` or "
        "`skipped`; or `not_sent` when the course is not connected to this destination (no "
        "launch from the LMS course, no SIS class mapped), so nothing is worked out for it "
        "(`reason_code` `course_not_connected`, `reason_text` says how to connect it).",
        "reason_code": "Why it is rejected, retrying, skipped or not sent, as a code (e.g. "
        "`unknown_user`; `course_not_connected` for `not_sent`).",
    },
    "AlignIn": {"course_id": "Only for this course; absent: for the whole connection."},
    # the 422 answer: every problem at once
    "HTTPValidationError": {"detail": "Every problem found in the request, one entry each."},
    "ValidationError": {
        "loc": "Where: `body`, `query` or `path`, then the path to the field.",
        "msg": "What is wrong, in words.",
        "type": "The rule broken, as a code.",
        "input": "The value given.",
        "ctx": "The rule's parameters (e.g. the limit exceeded).",
    },
}

_ACTIVITY_KIND = (
    "`graded` (sent), `practice` (never sent: no points), `completion` (full credit once "
    "completed)."
)
_ENROLLMENT_STATUS = (
    "`active`, `inactive`, `completed` or `dropped`: only active learners get grades."
)
for _schema in ("ActivityBody", "ActivityIn", "ActivityOut"):
    BY_SCHEMA.setdefault(_schema, {})["kind"] = _ACTIVITY_KIND
for _schema in ("EnrollmentBody", "EnrollmentIn"):
    BY_SCHEMA.setdefault(_schema, {})["status"] = _ENROLLMENT_STATUS

PARAMETERS: dict[str, str] = {
    "course_id": FIELDS["course_id"],
    "activity_id": FIELDS["activity_id"],
    "person_id": FIELDS["person_id"],
    "destination_id": "The destination's id (an LMS platform or a SIS connection).",
    "platform_id": "The LMS platform's id (a destination of kind `lti13_ags`).",
    "consumer_id": "The LTI 1.1 consumer's id (a destination of kind `lti11_outcomes`).",
    "run_id": "The sync run's id.",
    "schedule_id": "The schedule's id.",
    "group": "The activity group (an activity's `category`) to align.",
    "section_id": "The course's section (as its enrollments name it) mapped to its own class.",
    "limit": "At most this many, newest first.",
    "trigger": "Only runs with this trigger.",
}

# Operations without a docstring of their own, by "METHOD path".
OPERATIONS: dict[str, str] = {
    "GET /healthz": "Liveness: 200 while the process serves requests.",
    "GET /readyz": "Readiness: 200 when the database answers and its schema is up to date.",
    "GET /api/v1/courses/{course_id}": "One course with its policy.",
    "GET /api/v1/courses": "The tenant's courses.",
    "GET /api/v1/courses/{course_id}/activities": "The course's activities.",
    "GET /api/v1/activities/{activity_id}": "One activity with its policy.",
    "PUT /api/v1/people/{person_id}": "Store or update one person; a field left out keeps its "
    "stored value.",
    "GET /api/v1/destinations": "The tenant's destinations, whether paused and why.",
    "DELETE /api/v1/destinations/{destination_id}": "Remove a destination and everything "
    "gradesync knows about it (grades already sent stay in the destination).",
    "POST /api/v1/destinations/{destination_id}/resume": "Deliver again: lifts a manual, timed "
    "or misconfiguration pause; waiting results go out at once.",
    "GET /api/v1/destinations/{destination_id}/diagnosis": "What is wrong with a destination "
    "and what to do: rejected results grouped by reason, with the remote's words and a remedy.",
    "GET /api/v1/platforms": "The tenant's LMS platforms (LTI 1.3).",
    "GET /api/v1/platforms/{platform_id}": "One LMS platform with the tool's URLs to register "
    "in it.",
    "PUT /api/v1/sis/connections/{destination_id}/students/{person_id}": "Link a learner to "
    "their student in the SIS.",
    "DELETE /api/v1/sis/connections/{destination_id}/alignments/{group}": "Remove an activity "
    "group's alignment to a SIS category.",
    "GET /api/v1/sis/connections/{destination_id}/validation": "Check a SIS connection's set-up "
    "before posting: classes, students, categories and terms that do not line up.",
    "POST /api/v1/schedules": "Add a scheduled sync (interval, daily, weekly or cron).",
    "GET /api/v1/schedules/{schedule_id}": "One schedule with its next runs.",
    "PATCH /api/v1/schedules/{schedule_id}": "Change a schedule: only the fields present change.",
    "DELETE /api/v1/schedules/{schedule_id}": "Delete a schedule (its runs and history stay).",
    "POST /api/v1/schedules/{schedule_id}/pause": "Stop a schedule from running until resumed.",
    "POST /api/v1/schedules/{schedule_id}/resume": "Run a paused schedule again from its next "
    "time.",
    "GET /lti/jwks.json": "The tool's public keys (JWKS), for the LMS to check gradesync's "
    "signed messages and token requests.",
    "GET /lti/canvas.json": "The tool's configuration in Canvas's JSON format, to paste into "
    "a Canvas developer key.",
    "GET /lti/login": "LTI 1.3 OIDC login initiation (the LMS sends the browser here first).",
    "POST /lti/login": "LTI 1.3 OIDC login initiation, as a form post.",
    "POST /lti/launch": "LTI 1.3 launch: checks the LMS's signed id_token and links the learner "
    "and course to the LMS's.",
    "POST /lti/deep_link/respond": "Deep linking: the instructor's choice of activities, "
    "signed and returned to the LMS, which creates the links.",
}

_WHEN = "2025-03-01T10:00:00Z"
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "AttemptIn": [
        {
            "source_event_id": "quiz1-ada-1",
            "activity_id": "quiz1",
            "person_id": "ada",
            "score_given": 8,
            "score_maximum": 10,
            "completed_at": _WHEN,
        }
    ],
    "AttemptBatchIn": [
        {
            "attempts": [
                {
                    "source_event_id": "quiz1-ada-1",
                    "activity_id": "quiz1",
                    "person_id": "ada",
                    "score_given": 8,
                    "score_maximum": 10,
                    "completed_at": _WHEN,
                },
                {
                    "source_event_id": "quiz1-alan-1",
                    "activity_id": "quiz1",
                    "person_id": "alan",
                    "score_given": 6.5,
                    "score_maximum": 10,
                    "completed_at": _WHEN,
                    "late": True,
                },
            ]
        }
    ],
    "IngestIn": [
        {
            "courses": [{"id": "bio-101", "title": "Biology 101", "time_zone": "Europe/Paris"}],
            "activities": [
                {
                    "id": "quiz1",
                    "course_id": "bio-101",
                    "title": "Quiz 1: cells",
                    "points_possible": 10,
                    "due_at": "2025-03-07T23:59:00+01:00",
                }
            ],
            "people": [{"id": "ada", "name": "Ada Byron", "email": "ada@example.edu"}],
            "enrollments": [{"course_id": "bio-101", "person_id": "ada"}],
        }
    ],
    "SyncIn": [{"trigger": "resync", "course_id": "bio-101"}],
    "CourseSyncIn": [
        {"trigger": "resync"},
        {"trigger": "remaster", "destination_id": "lms", "activity_ids": ["quiz1"]},
    ],
    "ScheduleIn": [
        {"kind": "weekly", "spec": "mon,wed 07:00", "course_id": "bio-101"},
        {"kind": "interval", "spec": "2h"},
    ],
}


def _fill(target: dict[str, Any], text: str | None) -> None:
    if text and not target.get("description"):
        target["description"] = text


def pause_example(now: datetime) -> dict[str, Any]:
    """`PauseIn`'s example: until 06:00 UTC the next day, so 6 to 30 hours after `now`. A pause
    must end in the future (rule `future`): a fixed date would be refused once it passed, and
    one far ahead would read as "until resumed"."""
    next_day = (now.astimezone(UTC) + timedelta(days=1)).date()
    until = datetime(next_day.year, next_day.month, next_day.day, 6, tzinfo=UTC)
    return {"reason": "LMS upgrade tonight", "until": until.strftime("%Y-%m-%dT%H:%M:%SZ")}


def describe(spec: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Add the words above where the generated document has none; return it. `now`: when the
    document is asked for (an example that must be in the future is made from it, each time:
    the generated document is kept from one request to the next)."""
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        own = BY_SCHEMA.get(name, {})
        for field, prop in (schema.get("properties") or {}).items():
            _fill(prop, own.get(field) or FIELDS.get(field))
        if name in EXAMPLES and "examples" not in schema:
            schema["examples"] = EXAMPLES[name]
        if name == "PauseIn":
            schema["examples"] = [pause_example(now)]
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            _fill(op, OPERATIONS.get(f"{method.upper()} {path}"))
            for param in op.get("parameters", []):
                _fill(param, PARAMETERS.get(param.get("name", "")))
    return spec
