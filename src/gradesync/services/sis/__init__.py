"""SIS grade passback (OneRoster 1.2): connection set-up (`connection`), class and student
mapping and category alignment (`mapping`), the per-activity "Sync to SIS" selection and
validation (`selection`), "Post grades" (`posting`), and what a course looks like from the
SIS (`overview`, for the console).

Where things are kept (no table of our own, see docs/oneroster.md):
- the connection is a Destination of kind oneroster_rest (config: URLs, scopes, profile
  knobs, category_map; secret: client_secret);
- course -> SIS class is the CourseLink (data: school, term dates, sections, category_map);
- person -> SIS student is a PersonLink (per course when the learner's section is its own
  SIS class);
- "Sync to SIS" is ItemLink.data["sync_to_sis"]: the link of an activity at this destination
  exists once it was selected, and keeps its stable line item sourcedId when unselected.
"""

from __future__ import annotations

from gradesync.domain.model import SIS_KINDS
from gradesync.services.sis.common import (
    CLEARABLE,
    COLUMN_RULES,
    DEFAULT_SCOPES,
    PROFILE_KEYS,
    SCOPE_PREFIX,
    SisDirectory,
    given_profile,
    sis_destination,
    touch_items,
)
from gradesync.services.sis.connection import (
    ANY_VERSION,
    add_connection,
    get_connection,
    has_rest_api,
    name_limit_said,
    rest_connection,
    settings_version,
    token_origin,
    version_problem,
    well_formed_version,
)
from gradesync.services.sis.mapping import (
    CategoryAlignment,
    RosterMapping,
    SisIdMove,
    align_categories,
    align_category,
    check_categories,
    course_students,
    follow_sis_ids,
    map_class,
    map_course_students,
    map_student,
    refuse_unknown_class,
    send_to_new_sis_ids,
    sis_category_ids,
    unmap_section,
)
from gradesync.services.sis.overview import (
    CourseOverview,
    PostedResult,
    course_overview,
    posted_results,
    sis_connections,
)
from gradesync.services.sis.posting import (
    PostResult,
    nothing_to_post,
    post_grades,
)
from gradesync.services.sis.selection import (
    ActivityCheck,
    activities_of,
    check_activity,
    check_activity_categories,
    left_out,
    reopen_rejected,
    select_activities,
    tick_checked,
    validate,
    validate_asking,
)

__all__ = [
    "ANY_VERSION",
    "CLEARABLE",
    "COLUMN_RULES",
    "DEFAULT_SCOPES",
    "PROFILE_KEYS",
    "SCOPE_PREFIX",
    "SIS_KINDS",
    "ActivityCheck",
    "CategoryAlignment",
    "CourseOverview",
    "PostResult",
    "PostedResult",
    "RosterMapping",
    "SisDirectory",
    "SisIdMove",
    "activities_of",
    "add_connection",
    "align_categories",
    "align_category",
    "check_activity",
    "check_activity_categories",
    "check_categories",
    "course_overview",
    "course_students",
    "follow_sis_ids",
    "get_connection",
    "given_profile",
    "has_rest_api",
    "left_out",
    "map_class",
    "map_course_students",
    "map_student",
    "name_limit_said",
    "nothing_to_post",
    "post_grades",
    "posted_results",
    "refuse_unknown_class",
    "reopen_rejected",
    "rest_connection",
    "select_activities",
    "send_to_new_sis_ids",
    "settings_version",
    "sis_category_ids",
    "sis_connections",
    "sis_destination",
    "tick_checked",
    "token_origin",
    "touch_items",
    "unmap_section",
    "validate",
    "validate_asking",
    "version_problem",
    "well_formed_version",
]
