"""Why a course is not connected to a destination, and what connects it, in one wording: the
console's grid, the learner's grades over the API and the diagnosis (the `course_connected`
check, the course triage's `course_not_connected`) all say this.

An LMS course is connected by a launch from it (or Deep Linking), which tells gradesync where
its gradebook is; a SIS has no launches: a course is connected to it by being mapped to one of
its classes (docs/oneroster.md)."""

from __future__ import annotations

from dataclasses import dataclass

from gradesync.domain import remedies
from gradesync.domain.model import SIS_KINDS, Course, CourseLink, Destination
from gradesync.domain.passback import PassbackRule

# what connects an LMS course (also the remedy of the LMS's own `course_not_linked` answer)
LAUNCH_REMEDY = (
    "Add gradesync activities to the LMS course with Deep Linking (or open one of its "
    "links) so the LMS tells gradesync where the gradebook is."
)
# what gives its launches a gradebook (also the remedy of the LMS's `no_grade_scope` answer)
GRADE_SCOPE_REMEDY = (
    "Enable Assignment and Grade Services for gradesync's registration in the LMS (the "
    "score and line item scopes), then run `gradesync destinations check`."
)


def sis_class_remedy(destination_id: str, course: Course) -> str:
    """What connects a course to a SIS: mapping it to one of the SIS's classes (no launch
    does; a SIS has no LTI links), as docs/oneroster.md says."""
    return (
        f"Map the course to its class in the SIS: gradesync sis map-class {destination_id} "
        f"{course.id} CLASS_SOURCEDID --school SCHOOL_SOURCEDID --tenant {course.tenant_id} "
        f"(or in the console: SIS passback, the course's page "
        f"/console/sis/{destination_id}/courses/{course.id}, Class and students). Then tick "
        "'Sync to SIS' on the activities whose grades belong in the SIS (gradesync sis select)."
    )


@dataclass(frozen=True, slots=True)
class NotConnected:
    """`evidence`: what is missing; `remedy`: what connects the course; `code`: the cause,
    as a refusal of the same cause names it."""

    evidence: str
    remedy: str
    code: str
    destination_id: str
    course_id: str

    @property
    def text(self) -> str:
        """Both in one line, as the console and `reason_text` say it."""
        return f"{self.evidence} {self.remedy}"

    @property
    def for_instructor(self) -> str:
        """As `text`, with a remedy an instructor can act on (`remedies.for_instructor`)."""
        return f"{self.evidence} {remedies.for_instructor(self.code, self.remedy)}"

    def read_over(self, reader: remedies.Reader) -> str:
        """As `text`, with the remedy of an administrator reading over `reader`
        (`remedies.for_reader`)."""
        remedy = remedies.for_reader(
            self.code, self.remedy, reader, self.destination_id, course_id=self.course_id
        )
        return f"{self.evidence} {remedy}"

    def in_console(self, *, instructor: bool) -> str:
        """As `text`, for an instructor or an administrator in the console."""
        return self.for_instructor if instructor else self.read_over(remedies.Reader.CONSOLE)


def not_connected(
    course: Course, destination: Destination, link: CourseLink | None = None
) -> NotConnected:
    """Why no grade of `course` is sent to `destination`, given the course's link there
    (None: none yet; one without a remote id: launches without a gradebook)."""
    if destination.kind in SIS_KINDS:
        why, remedy = "it is not mapped to a SIS class", sis_class_remedy(destination.id, course)
        code = PassbackRule.CLASS_NOT_MAPPED.value
    elif link is None:
        why, remedy = "no launch from the LMS course has been received yet", LAUNCH_REMEDY
        code = "course_not_linked"
    else:
        why, remedy = (
            "its launches carry no grade service endpoint (AGS not granted)",
            GRADE_SCOPE_REMEDY,
        )
        code = "no_grade_scope"
    return NotConnected(
        f"{course.title} is not connected to {destination.name}: {why}, so no grade of it is "
        "sent there.",
        remedy,
        code,
        destination.id,
        course.id,
    )
