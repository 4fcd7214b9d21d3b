"""The sandbox's in-memory world: LMS courses and gradebook, SIS roster and gradebook.

All state lives on the event loop thread; handlers never await between a check and the write
it guards, so no locks are needed and a burst of concurrent scores stays consistent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import (
    CourseSeed,
    LineItemSeed,
    Lti11ConsumerSeed,
    ResourceLinkSeed,
    SandboxConfig,
    SeedData,
    SisCategorySeed,
    SisClassSeed,
    SisClientSeed,
    SisStudentSeed,
    SisTermSeed,
    ToolSeed,
    UserSeed,
)


class SeedError(ValueError):
    """A seed or admin request refers to something that does not exist."""


class SeedProblems(SeedError):
    """Every reference in a seed to what the seed (or the sandbox) does not have, each with
    its path in the seed (`("sis", "classes", 0, "term")`), a rule and a sentence."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(loc)}: {m} [{r}]" for loc, r, m in problems))


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


@dataclass
class User:
    sub: str
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    sis_id: str | None = None


@dataclass
class ResourceLink:
    id: str
    title: str = ""
    client_id: str | None = None
    url: str | None = None
    custom: dict[str, str] = field(default_factory=dict)


@dataclass
class ScoreRecord:
    """What the LMS gradebook holds for one (line item, user)."""

    timestamp: datetime
    score_given: float | None
    score_maximum: float | None
    comment: str | None
    activity_progress: str
    grading_progress: str
    source: str  # "tool" | "instructor" | "lti11"
    attempts: int = 0
    history: int = 0
    updated_at: datetime | None = None
    # the line item's points when this was stored: Canvas turns a score into the
    # column's points then, so a score stored before a column's points are put right
    # keeps the old scale (its result is read on it)
    column_points: float | None = None


@dataclass
class LineItem:
    id: int
    course_id: str
    label: str
    score_maximum: float
    resource_id: str | None = None
    tag: str | None = None
    resource_link_id: str | None = None
    start: str | None = None
    end: str | None = None
    grades_released: bool | None = None
    client_id: str | None = None
    published: bool = True
    allowed_attempts: int | None = None
    # the LMS keeps the column's points as they are (as one whose points something else sets
    # back after every change: a course template, another tool): a tool's scoreMaximum is
    # not applied, and a score stays on the points it was sent on, read on the column's own
    points_kept: bool = False
    scores: dict[str, ScoreRecord] = field(default_factory=dict)


@dataclass
class Course:
    id: str
    title: str = ""
    label: str = ""
    concluded: bool = False
    learners: set[str] = field(default_factory=set)
    instructors: set[str] = field(default_factory=set)
    # Members who left: sub -> (NRPS status "Inactive" or "Deleted", the role they had).
    departed: dict[str, tuple[str, str]] = field(default_factory=dict)
    # sub -> the membership change counter when their membership last changed (NRPS
    # differences are the members changed after a given counter value).
    membership_changes: dict[str, int] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_links: dict[str, ResourceLink] = field(default_factory=dict)
    line_items: dict[int, LineItem] = field(default_factory=dict)


@dataclass
class SisClass:
    sourced_id: str
    title: str
    school: str
    term: str | None
    students: set[str] = field(default_factory=set)


@dataclass
class SisObject:
    """A stored OneRoster object (category, lineItem or result) in its wire form."""

    data: dict[str, Any]
    created_by: str


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.mode = config.mode
        self.max_page_size = config.max_page_size
        self.line_item_filters = config.line_item_filters
        self.users: dict[str, User] = {}
        self.courses: dict[str, Course] = {}
        self.line_items: dict[int, LineItem] = {}
        self.tools: dict[str, ToolSeed] = {}
        self.lti11_consumers: dict[str, str] = {}
        # LTI 1.1 lis_result_sourcedid -> (consumer key, line item id, user sub)
        self.lti11_sourcedids: dict[str, tuple[str, int, str]] = {}
        self.sis_clients: dict[str, SisClientSeed] = {}
        self.sis_profile = config.seed.sis.profile
        self.sis_schools: set[str] = set()
        self.sis_terms: dict[str, SisTermSeed] = {}
        self.sis_students: dict[str, SisStudentSeed] = {}
        self.sis_classes: dict[str, SisClass] = {}
        self.sis_categories: dict[str, SisObject] = {}
        self.sis_category_classes: dict[str, set[str]] = {}
        self.sis_line_items: dict[str, SisObject] = {}
        self.sis_results: dict[str, SisObject] = {}
        self._ids = itertools.count(1)
        self.membership_counter = 0
        self.apply_seed(config.seed)

    # ---- seeding (also used by the admin endpoints) ----

    def _reference_problems(self, seed: SeedData) -> list[tuple[tuple[str | int, ...], str, str]]:
        """What the seed's SIS part names and nobody has, all at once. (A class's school and
        students are made bare when not listed, as a course's learners are.)"""
        sis = seed.sis
        terms = set(self.sis_terms) | {t.sourcedId for t in sis.terms}
        classes = set(self.sis_classes) | {c.sourcedId for c in sis.classes}
        problems: list[tuple[tuple[str | int, ...], str, str]] = []
        for i, klass in enumerate(sis.classes):
            if klass.term is not None and klass.term not in terms:
                problems.append(
                    (
                        ("sis", "classes", i, "term"),
                        "unknown_term",
                        f"SIS term {klass.term!r} is not one of sis.terms",
                    )
                )
        for i, category in enumerate(sis.categories):
            for j, class_id in enumerate(category.classes):
                if class_id not in classes:
                    problems.append(
                        (
                            ("sis", "categories", i, "classes", j),
                            "unknown_class",
                            f"SIS class {class_id!r} is not one of sis.classes",
                        )
                    )
        return problems

    def apply_seed(self, seed: SeedData) -> None:
        problems = self._reference_problems(seed)
        if problems:
            raise SeedProblems(problems)
        for user in seed.users:
            self.add_user(user)
        for tool in seed.tools:
            self.add_tool(tool)
        for course in seed.courses:
            self.add_course(course)
        for consumer in seed.lti11_consumers:
            self.add_lti11_consumer(consumer)
        sis = seed.sis
        if sis.profile.model_fields_set:
            self.sis_profile = sis.profile
        for client in sis.clients:
            self.sis_clients[client.client_id] = client
        self.sis_schools.update(sis.schools)
        for term in sis.terms:
            self.add_sis_term(term)
        for student in sis.students:
            self.add_sis_student(student)
        for klass in sis.classes:
            self.add_sis_class(klass)
        for category in sis.categories:
            self.add_sis_category(category)

    def add_user(self, seed: UserSeed) -> User:
        user = User(**seed.model_dump())
        self.users[user.sub] = user
        return user

    def _ensure_user(self, sub: str) -> None:
        if sub not in self.users:
            # Enrolling an unknown sub creates a bare user: seeds stay short.
            self.users[sub] = User(sub=sub, name=sub)

    def add_tool(self, seed: ToolSeed) -> ToolSeed:
        self.tools[seed.client_id] = seed
        return seed

    def add_lti11_consumer(self, seed: Lti11ConsumerSeed) -> None:
        self.lti11_consumers[seed.key] = seed.secret

    def add_course(self, seed: CourseSeed) -> Course:
        course = self.courses.get(seed.id) or Course(id=seed.id)
        course.title = seed.title or course.title or seed.id
        course.label = seed.label or course.label or seed.id
        course.concluded = seed.concluded
        self.courses[seed.id] = course
        for sub in seed.learners:
            self.enroll(course.id, sub, "learner")
        for sub in seed.instructors:
            self.enroll(course.id, sub, "instructor")
        for section in seed.sections:
            course.sections[section.id] = {
                "id": section.id,
                "title": section.title or section.id,
                "sis_id": section.sis_id,
                "learners": list(section.learners),
            }
            for sub in section.learners:
                self.enroll(course.id, sub, "learner")
        for link in seed.resource_links:
            self.add_resource_link(course.id, link)
        for item in seed.line_items:
            self.add_line_item(course.id, item)
        return course

    def course(self, course_id: str) -> Course:
        try:
            return self.courses[course_id]
        except KeyError:
            raise SeedError(f"course {course_id!r} does not exist") from None

    def enroll(self, course_id: str, sub: str, role: str) -> None:
        course = self.course(course_id)
        self._ensure_user(sub)
        self._membership_changed(course, sub)
        course.departed.pop(sub, None)
        if role == "learner":
            course.learners.add(sub)
            course.instructors.discard(sub)
        elif role == "instructor":
            course.instructors.add(sub)
            course.learners.discard(sub)
        else:
            raise SeedError(f"role: must be 'learner' or 'instructor', got {role!r}")

    def unenroll(self, course_id: str, sub: str, status: str = "Deleted") -> None:
        """End a membership; the roster still lists the member with `status` (Inactive: a
        concluded or suspended enrollment, Deleted: removed from the course)."""
        course = self.course(course_id)
        if sub not in course.learners and sub not in course.instructors:
            raise SeedError(f"user {sub!r} is not enrolled in course {course_id!r}")
        if status not in ("Inactive", "Deleted"):
            raise SeedError(f"status: must be 'Inactive' or 'Deleted', got {status!r}")
        role = "learner" if sub in course.learners else "instructor"
        course.learners.discard(sub)
        course.instructors.discard(sub)
        course.departed[sub] = (status, role)
        self._membership_changed(course, sub)

    def _membership_changed(self, course: Course, sub: str) -> None:
        self.membership_counter += 1
        course.membership_changes[sub] = self.membership_counter

    def add_resource_link(self, course_id: str, seed: ResourceLinkSeed) -> ResourceLink:
        course = self.course(course_id)
        link = ResourceLink(**seed.model_dump())
        course.resource_links[link.id] = link
        return link

    def new_id(self) -> int:
        return next(self._ids)

    def add_line_item(self, course_id: str, seed: LineItemSeed) -> LineItem:
        course = self.course(course_id)
        if seed.resourceLinkId and seed.resourceLinkId not in course.resource_links:
            raise SeedError(
                f"resourceLinkId: resource link {seed.resourceLinkId!r} "
                f"does not exist in course {course_id!r}"
            )
        item = LineItem(
            id=self.new_id(),
            course_id=course_id,
            label=seed.label,
            score_maximum=seed.scoreMaximum,
            resource_id=seed.resourceId,
            tag=seed.tag,
            resource_link_id=seed.resourceLinkId,
            start=seed.startDateTime,
            end=seed.endDateTime,
            client_id=seed.client_id,
            published=seed.published,
            allowed_attempts=seed.allowed_attempts,
        )
        course.line_items[item.id] = item
        self.line_items[item.id] = item
        return item

    def remove_line_item(self, item: LineItem) -> None:
        self.line_items.pop(item.id, None)
        self.courses[item.course_id].line_items.pop(item.id, None)

    # ---- SIS ----

    def add_sis_term(self, seed: SisTermSeed) -> None:
        self.sis_terms[seed.sourcedId] = seed

    def add_sis_student(self, seed: SisStudentSeed) -> None:
        self.sis_students[seed.sourcedId] = seed

    def add_sis_class(self, seed: SisClassSeed) -> SisClass:
        if seed.term is not None and seed.term not in self.sis_terms:
            raise SeedError(f"term: SIS term {seed.term!r} does not exist")
        for student in seed.students:
            if student not in self.sis_students:
                self.sis_students[student] = SisStudentSeed(sourcedId=student, name=student)
        self.sis_schools.add(seed.school)
        klass = SisClass(
            sourced_id=seed.sourcedId,
            title=seed.title or seed.sourcedId,
            school=seed.school,
            term=seed.term,
            students=set(seed.students),
        )
        self.sis_classes[klass.sourced_id] = klass
        return klass

    def add_sis_category(self, seed: SisCategorySeed) -> None:
        data: dict[str, Any] = {
            "sourcedId": seed.sourcedId,
            "status": "active",
            "dateLastModified": "2024-01-01T00:00:00Z",
            "title": seed.title,
        }
        if seed.weight is not None:
            data["weight"] = seed.weight
        self.sis_categories[seed.sourcedId] = SisObject(data=data, created_by="seed")
        self.sis_category_classes.setdefault(seed.sourcedId, set()).update(seed.classes)
