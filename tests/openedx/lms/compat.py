"""The edx-platform glue of `lti_consumer.plugin.compat`, for this LMS.

`install()` replaces exactly the functions listed in `REPLACED` (tests/openedx/README.md says
why each one). Everything else in the package, its models, token endpoint, launch gate, AGS
views and the signal that publishes AGS scores, runs unmodified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from lti_consumer.exceptions import LtiError
from lti_consumer.plugin import compat as lti_compat

from tests.openedx.lms.models import Block, Course, Enrollment, ExternalId, PublishedGrade
from tests.openedx.lms.runtime import load_block


@dataclass(frozen=True)
class _Flag:
    """A CourseWaffleFlag that is off, as in a default Open edX installation."""

    name: str

    def is_enabled(self, course_key: Any = None) -> bool:
        return False


@dataclass(frozen=True)
class _CourseOverview:
    id: str
    display_name_with_default: str
    display_org_with_default: str
    lti_passports: tuple[str, ...] = ()


def get_external_config_waffle_flag() -> _Flag:
    return _Flag("lti_consumer.enable_external_config_filter")


def get_external_user_id_1p1_launches_waffle_flag() -> _Flag:
    return _Flag("lti_consumer.enable_external_user_id_1p1_launches")


def get_database_config_waffle_flag() -> _Flag:
    return _Flag("lti_consumer.enable_database_config")


def get_external_multiple_launch_urls_waffle_flag() -> _Flag:
    return _Flag("lti_consumer.enable_external_multiple_launch_urls")


def load_enough_xblock(location: Any) -> Any:
    return load_block(location)


def save_xblock(block: Any) -> None:
    block.save()


def load_block_as_user(location: Any) -> Any:
    """The block bound to the request's user; outside a learner's request (a tool's AGS call)
    not bound to anyone, as edx-platform binds it to the anonymous user."""
    from crum import get_current_user

    user = get_current_user()
    return load_block(location, user if user is not None and user.is_authenticated else None)


def get_user_from_external_user_id(external_user_id: str) -> Any:
    try:
        return ExternalId.objects.get(external_user_id=external_user_id).user
    except ExternalId.DoesNotExist as exc:
        raise LtiError("Invalid User") from exc
    except ValidationError as exc:
        raise LtiError("Invalid userID") from exc


def publish_grade(
    block: Any,
    user: Any,
    score: float | None,
    possible: float | None,
    only_if_higher: bool = False,
    score_deleted: bool | None = None,
    comment: str | None = None,
) -> None:
    """The grades app's SCORE_PUBLISHED: the harness's gradebook keeps every publish."""
    PublishedGrade.objects.create(
        user=user,
        block=Block.objects.get(usage_key=str(block.scope_ids.usage_id)),
        earned=score,
        possible=possible,
        only_if_higher=only_if_higher,
        score_deleted=score_deleted,
        comment=comment,
    )


def _enrollment(user: Any, course_key: Any) -> Enrollment | None:
    if user is None or not user.is_authenticated:
        return None
    return Enrollment.objects.filter(user=user, course__key=str(course_key)).first()


def user_has_access(user: Any, action: str, block: Any, course_key: Any) -> bool:
    return bool(user is not None and user.is_staff) or _enrollment(user, course_key) is not None


def user_has_studio_write_access(user: Any, course_key: Any) -> bool:
    if user is not None and user.is_staff:
        return True
    enrollment = _enrollment(user, course_key)
    return enrollment is not None and enrollment.role in ("instructor", "staff")


def get_course_by_id(course_key: Any) -> _CourseOverview | None:
    course = Course.objects.filter(key=str(course_key)).first()
    if course is None:
        return None
    return _CourseOverview(str(course_key), course.display_name, course.org)


def user_course_access(
    course: Any, user: Any, action: str, check_if_enrolled: bool = False, **_: Any
) -> bool:
    if course is None:
        return False
    if user is not None and user.is_staff:
        return True
    return not check_if_enrolled or _enrollment(user, course.id) is not None


def batch_get_or_create_externalids(users: Any) -> dict[int, ExternalId]:
    return {u.id: ExternalId.objects.get_or_create(user=u)[0] for u in users}


REPLACED = (
    "get_external_config_waffle_flag",
    "get_external_user_id_1p1_launches_waffle_flag",
    "get_database_config_waffle_flag",
    "get_external_multiple_launch_urls_waffle_flag",
    "load_enough_xblock",
    "save_xblock",
    "load_block_as_user",
    "get_user_from_external_user_id",
    "publish_grade",
    "user_has_access",
    "user_has_studio_write_access",
    "get_course_by_id",
    "user_course_access",
    "batch_get_or_create_externalids",
)


def install() -> None:
    here = globals()
    for name in REPLACED:
        if not hasattr(lti_compat, name):
            raise RuntimeError(
                f"lti_consumer.plugin.compat has no {name}: check the pinned version"
            )
        setattr(lti_compat, name, here[name])
    get_user_model()  # the auth app is ready: fail here, not in the first request
