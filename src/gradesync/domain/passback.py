"""SIS grade passback (OneRoster 1.2): the SIS profile, the rules an activity must meet before
it is sent, how a desired result reads in OneRoster terms, and our stable sourcedIds.

Pure: the REST adapter, the CSV export and the validation service all use these, so a rule or a
mapping is written once and the three cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.model import Activity, NameRule, ScoreForm
from gradesync.domain.policy import DesiredResult

__all__ = [
    "LINE_ITEM_PREFIX",
    "NAME_MAX_LENGTH_MOST",
    "NAME_MAX_LENGTH_WORDS",
    "CategoryMatch",
    "PassbackRule",
    "SisProfile",
    "Term",
    "capabilities_for",
    "category_sourced_id",
    "file_category",
    "former_owner",
    "line_item_owner",
    "line_item_sourced_id",
    "name_max_length_problem",
    "name_max_length_said",
    "other_installation",
    "others_adopted",
    "passback_problems",
    "profile_from_config",
    "result_flags",
    "result_sourced_id",
    "score_date",
    "score_status",
]


class CategoryMatch(StrEnum):
    ID = "id"  # the activity group (or its alignment) is the SIS category sourcedId
    NAME = "name"  # the activity group equals the SIS category title, exactly


class PassbackRule(StrEnum):
    """Codes of the checks an activity must pass before its grades go to the SIS."""

    NOT_SELECTED = "not_selected_for_sis"
    NOT_POSTED = "waiting_for_post"  # ticked with a hold: waits for "Post grades"
    DUE_DATE_REQUIRED = "due_date_required"
    DUE_DATE_OUTSIDE_TERM = "due_date_outside_term"
    TERM_UNKNOWN = "term_unknown"
    NAME_TOO_LONG = "name_too_long"
    NAME_EMPTY = "name_empty"
    LEARNER_DUE_DATES = "differentiated_due_dates"
    CATEGORY_MISSING = "category_missing"
    CLASS_NOT_MAPPED = "class_not_mapped"
    # the activity's own line item in the class names another installation in its metadata
    OTHER_INSTALLATION = "line_item_of_another_installation"


# A delivery log line that is no send: a learner's results went to another student (their
# SIS id changed), and what the old student's record took stays in the SIS.
STUDENT_CHANGED = "student_changed"

# Where a SIS person link came from (its data's "by"): the learner's SIS id (map-students, a
# sync's match, following a new SIS id), or a student picked by hand (map-student), which a
# new SIS id does not replace. A link saved before this was recorded holds none: in a course
# it was made by a SIS id (then the learner's), as a hand-picked link belongs to no course
# until map-students copies it.
LINKED_BY = "by"
BY_SIS_ID, BY_HAND = "sis_id", "hand"
# A link by SIS id that did not follow the learner's new SIS id because another learner of the
# course is linked to that student (the data's value: that learner's id).
NOT_FOLLOWED = "not_followed_for"


def settle_moves(
    students: Mapping[str, str], moves: Mapping[str, str]
) -> tuple[set[str], dict[str, str]]:
    """A course's links to follow as one set: `students` (each learner's SIS student now),
    `moves` (learners whose link may follow a new SIS id: their new student). Every move is
    made unless, with all the others made, its learner would share a student with another
    learner; a refused move keeps its learner's student, which may refuse another in turn, so
    the refusals are found until none is left. A chain (Ada onto Bo's old student, Bo onto a
    new one) and a swap are made whatever the learners' order. Returns (the learners moved,
    each refused one with the learner they would share a student with)."""
    refused: dict[str, str] = {}
    while True:
        final = {p: moves.get(p, s) if p not in refused else s for p, s in students.items()}
        final.update({p: s for p, s in moves.items() if p not in students and p not in refused})
        holders: dict[str, list[str]] = {}
        for person_id, student in final.items():
            holders.setdefault(student, []).append(person_id)
        more = {
            p: min(x for x in held if x != p)
            for held in holders.values()
            if len(held) > 1
            for p in held
            if p in moves and p not in refused
        }
        if not more:
            return {p for p in moves if p not in refused}, refused
        refused.update(more)


# Requests in flight at once to a SIS unless its connection says otherwise: a school's SIS is
# often one modest server, so fewer than an LMS's default.
SIS_CONCURRENCY = 4
# The largest `name_max_length` a connection takes: the longest activity title gradesync
# stores (`services.ingest.MAX_TITLE`). A limit above it never cuts a name, so one is a typo
# (30000 for 30), not a SIS.
NAME_MAX_LENGTH_MOST = 1024


@dataclass(frozen=True, slots=True)
class SisProfile:
    """What one SIS accepts. Set per destination (config keys of the same names)."""

    name_max_length: int | None = None  # Infinite Campus / PowerTeacher Pro: 30
    due_date_required: bool = True
    due_date_inside_term: bool = False
    may_create_categories: bool = False
    category_match: CategoryMatch = CategoryMatch.ID
    default_category: str | None = None  # for activities with no group


def configured_default_category(config: Mapping[str, Any]) -> str | None:
    """A connection's default category (`config`'s), for activities with no group: None when
    it has none, or none usable (`profile_from_config` refuses a blank one)."""
    value = config.get("default_category")
    return value if isinstance(value, str) and value.strip() else None


def group_of(category: str | None, default_category: str | None) -> str | None:
    """The group an activity's results go under at a SIS: its own, else the connection's
    default category (None: neither)."""
    return category or default_category


def _bool(config: dict[str, Any], key: str, default: bool, problems: list[FieldProblem]) -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    problems.append(FieldProblem(f"config.{key}", "boolean", f"{key} must be true or false."))
    return default


# a SIS's name limit refused, by rule, in words every reader shares; how to have no limit is
# each reader's own (an API body's `clear`, the command line's option, the console's empty
# box: services.sis.connection.name_limit_said)
NAME_MAX_LENGTH_WORDS = {
    "positive_integer": "name_max_length is a whole number of characters, 1 or more",
    "maximum": f"name_max_length is at most {NAME_MAX_LENGTH_MOST} characters, the longest "
    "activity title gradesync takes",
}


def name_max_length_said(rule: str, given: object) -> str:
    """A refused `name_max_length` in words, with what was given."""
    return f"{NAME_MAX_LENGTH_WORDS[rule]} (got {given!r})"


def name_max_length_problem(value: object) -> FieldProblem | None:
    """A `name_max_length` given to a connection above NAME_MAX_LENGTH_MOST (one stored
    before this bound is read as it is: it cuts no name)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > NAME_MAX_LENGTH_MOST:
        return FieldProblem(
            "config.name_max_length", "maximum", name_max_length_said("maximum", value) + "."
        )
    return None


def profile_from_config(config: dict[str, Any]) -> SisProfile:
    """Read the profile knobs of a destination's config; InvalidInput names each bad one."""
    problems: list[FieldProblem] = []
    length = config.get("name_max_length")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 1
    ):
        problems.append(
            FieldProblem(
                "config.name_max_length",
                "positive_integer",
                name_max_length_said("positive_integer", length) + ".",
            )
        )
        length = None
    match = config.get("category_match", CategoryMatch.ID.value)
    if not isinstance(match, str) or match not in {m.value for m in CategoryMatch}:
        problems.append(
            FieldProblem(
                "config.category_match", "one_of", "category_match must be 'id' or 'name'."
            )
        )
        match = CategoryMatch.ID.value
    # checked here with the rest of the connection; the delivery engine reads it (its
    # default, SIS_CONCURRENCY, when absent)
    concurrency = config.get("concurrency", SIS_CONCURRENCY)
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= 64
    ):
        problems.append(
            FieldProblem(
                "config.concurrency", "range", "concurrency must be a whole number from 1 to 64."
            )
        )
    default_category = configured_default_category(config)
    if default_category is None and config.get("default_category") is not None:
        problems.append(
            FieldProblem(
                "config.default_category", "not_blank", "default_category must be a non-empty text."
            )
        )
    profile = SisProfile(
        name_max_length=length,
        due_date_required=_bool(config, "due_date_required", True, problems),
        due_date_inside_term=_bool(config, "due_date_inside_term", False, problems),
        may_create_categories=_bool(config, "may_create_categories", False, problems),
        category_match=CategoryMatch(match),
        default_category=default_category,
    )
    if problems:
        raise InvalidInput(problems)
    return profile


def capabilities_for(profile: SisProfile) -> Capabilities:
    """What a OneRoster gradebook takes: points (checked against resultValueMax, so no extra
    credit), comments, and the late/missing/exempt statuses."""
    return Capabilities(
        score_form=ScoreForm.POINTS,
        extra_credit=False,
        comments=True,
        statuses=True,
        name_max_length=profile.name_max_length,
        zeros_stored=True,
        pending_results=True,
    )


@dataclass(frozen=True, slots=True)
class Term:
    """The SIS term of a class (first and last day, inclusive)."""

    start: date | None = None
    end: date | None = None

    @classmethod
    def from_link_data(cls, data: dict[str, Any]) -> Term:
        start, end = data.get("term_start"), data.get("term_end")
        return cls(
            date.fromisoformat(start) if isinstance(start, str) else None,
            date.fromisoformat(end) if isinstance(end, str) else None,
        )

    @property
    def known(self) -> bool:
        return self.start is not None and self.end is not None


def file_category(
    profile: SisProfile,
    connection_map: dict[str, Any] | None,
    course_map: dict[str, Any] | None,
    group: str | None,
) -> tuple[str | None, str | None]:
    """The SIS category sourcedId of an activity group at a file-based SIS (CSV), which
    cannot be asked for its categories: the group's alignment (the course's, then the
    connection's), else with `category_match: id` the group itself. Returns (sourcedId, None),
    or (None, why) when no category can be named (every result would be refused)."""
    group = group_of(group, profile.default_category)
    if group is None:
        return None, "the activity has no group and no default_category"
    mapping = {**(connection_map or {}), **(course_map or {})}
    if group in mapping:
        return str(mapping[group]), None
    if profile.category_match is CategoryMatch.ID:
        return group, None
    return None, "not aligned, and a file-based SIS cannot be asked for its categories by name"


def _problem(rule: PassbackRule, field: str, message: str) -> FieldProblem:
    return FieldProblem(field, rule.value, message)


def passback_problems(
    activity: Activity,
    profile: SisProfile,
    *,
    term: Term,
    name_rule: NameRule,
    learner_due_dates: int = 0,
) -> list[FieldProblem]:
    """Every reason `activity` cannot be passed back under `profile` (empty: it can).

    A name over the limit is a problem only when the policy refuses long names; under the
    default "shorten" rule the name is cut to the limit (see `domain.names`)."""
    problems: list[FieldProblem] = []
    title = activity.title
    if not title.strip():
        problems.append(
            _problem(
                PassbackRule.NAME_EMPTY, "title", "The activity has no name; the SIS needs one."
            )
        )
    limit = profile.name_max_length
    if limit is not None and len(title) > limit and name_rule is NameRule.REFUSE:
        problems.append(
            _problem(
                PassbackRule.NAME_TOO_LONG,
                "title",
                f"The name {title!r} is {len(title)} characters long; this SIS takes at most "
                f"{limit}. Shorten it, or set the name rule to 'shorten'.",
            )
        )
    if activity.due_at is None:
        if profile.due_date_required:
            problems.append(
                _problem(
                    PassbackRule.DUE_DATE_REQUIRED,
                    "due_at",
                    f"The activity {title!r} has no due date; this SIS requires one. Set a due "
                    "date for everyone (or for the section).",
                )
            )
    elif profile.due_date_inside_term:
        if not term.known:
            problems.append(
                _problem(
                    PassbackRule.TERM_UNKNOWN,
                    "term",
                    "This SIS requires due dates inside the term, but the class's term dates are "
                    "not known; give them when mapping the class (--term-start/--term-end).",
                )
            )
        else:
            due = activity.due_at.astimezone(UTC).date()
            assert term.start is not None and term.end is not None
            if not term.start <= due <= term.end:
                problems.append(
                    _problem(
                        PassbackRule.DUE_DATE_OUTSIDE_TERM,
                        "due_at",
                        f"The due date {due.isoformat()} of {title!r} is outside the term "
                        f"{term.start.isoformat()}..{term.end.isoformat()}; move it into the term.",
                    )
                )
    if learner_due_dates:
        problems.append(
            _problem(
                PassbackRule.LEARNER_DUE_DATES,
                "due_at",
                f"{title!r} has {learner_due_dates} per-learner due date(s); grade passback takes "
                "one due date for everyone or for a section. Remove the per-learner dates.",
            )
        )
    return problems


# --- results in OneRoster terms ------------------------------------------------------------


def score_status(result: DesiredResult) -> str:
    """OneRoster scoreStatus for a desired result."""
    if result.excused:
        return "exempt"
    if result.missing:
        return "not submitted"
    if result.grading_progress == "FullyGraded":
        return "fully graded"
    return "submitted" if result.score_given is None else "partially graded"


def result_flags(result: DesiredResult) -> dict[str, str]:
    """The OneRoster flags, as the strings "true"/"false" the binding uses."""

    def s(flag: bool) -> str:
        return "true" if flag else "false"

    progress = result.activity_progress
    return {
        "inProgress": s(progress in {"Started", "InProgress"}),
        "incomplete": s(progress not in {"Completed", "Submitted"} and not result.excused),
        "late": s(result.late),
        "missing": s(result.missing),
    }


def score_date(result: DesiredResult, fallback: datetime) -> str:
    """scoreDate is a date: the day (UTC) the counted work was scored."""
    moment = result.scored_at or fallback
    return moment.astimezone(UTC).date().isoformat()


# --- stable sourcedIds ---------------------------------------------------------------------
# Ours, deterministic, and free of personal data (the spec asks sourcedIds never carry PII):
# a hash of what the object is for, so the same activity always upserts the same SIS object.


def _sid(prefix: str, *parts: str) -> str:
    raw = "\x1f".join(parts).encode("utf-8")
    return f"{prefix}-{hashlib.sha256(raw).hexdigest()[:32]}"


LINE_ITEM_PREFIX = "gs-li"


def line_item_sourced_id(
    tenant_id: str, destination_id: str, activity_id: str, class_id: str
) -> str:
    # Per tenant, connection, activity and class: an activity id names one course of one
    # tenant, so two courses never share one (docs/oneroster.md, "Several courses, one class").
    return _sid(LINE_ITEM_PREFIX, tenant_id, destination_id, activity_id, class_id)


def line_item_owner(installation: str, tenant_id: str, activity_id: str) -> dict[str, str]:
    """Whose line item gradesync writes, kept in the item's metadata: the installation (its
    base URL), the tenant and the activity (which names one course of that tenant), not the
    connection, so a connection added again under another id (another sourcedId) knows the
    items it made before, and another installation whose tenant and activity ids are the
    same does not take them for its own."""
    return {"installation": installation, "tenant": tenant_id, "activity": activity_id}


def former_owner(owner: Mapping[str, str]) -> dict[str, str]:
    """The owner as gradesync wrote it before it named the installation: the tenant and the
    activity alone. An item under it is any installation's; it is taken for this one's only
    when its sourcedId is one this installation gives (`line_item_sourced_id`) under a
    connection id of the tenant it has or had."""
    return {k: v for k, v in owner.items() if k != "installation"}


def other_installation(item: Mapping[str, Any], owner: Mapping[str, str]) -> str | None:
    """The installation a line item found under this activity's own sourcedId names when it
    is not `owner`'s (None: it names this one, or none). The sourcedId does not name the
    installation, so another whose tenant, connection and activity ids are the same gives
    the same one: its item is refused, never written over. An item that names no
    installation (written before gradesync named it, or by a person) and one deleted in the
    SIS (`tobedeleted`) are taken as they are."""
    if item.get("status") == "tobedeleted":
        return None
    metadata = item.get("metadata")
    whose = metadata.get("gradesync") if isinstance(metadata, Mapping) else None
    named = whose.get("installation") if isinstance(whose, Mapping) else None
    if not isinstance(named, str) or named == owner["installation"]:
        return None
    return named


def others_adopted(line_item_id: str, how: str | None) -> bool:
    """Whether a line item recorded on an activity's link is another course's that it
    adopted by title and due date (`how`), as gradesync did before it adopted only items the
    SIS made: one under gradesync's own prefix is never adopted that way now."""
    return how == "title_due" and line_item_id.startswith(LINE_ITEM_PREFIX + "-")


def result_sourced_id(line_item_id: str, student_id: str) -> str:
    return _sid("gs-r", line_item_id, student_id)


def category_sourced_id(tenant_id: str, destination_id: str, group: str) -> str:
    return _sid("gs-cat", tenant_id, destination_id, group)
