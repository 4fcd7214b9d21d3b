"""Diagnosis rules: why a grade did or did not sync, as an ordered list of checks.

Support staff should not need a troubleshooting article: each check says what was
looked at, whether it passed, the evidence (ids, dates, the remote's own words) and what a
person should do. The rules are pure: the diagnostics service gathers the facts (attempts,
enrollment, launches, links, the ledger row, the delivery log, the destination) and these
functions turn them into checks, in the order a support engineer would look:

1. the course and the activity: sync on, published, graded, selected for sync;
2. the learner: enrolled as a learner, an attempt recorded, inside the course dates, which
   attempt counts and why, other accounts that look like the same person;
3. per destination: usable and allowed to send grades, the learner launched from this course,
   the course and the column connected, the ledger's state, the last delivery and the
   remote's answer, and whether the LMS still holds what gradesync sent.

The rules live in one module per subject: `checks` (the vocabulary: checks, a diagnosis,
the facts, the remote's answers in words), `learner` (one learner's grade),
`destination_checks` (per destination, for that grade), `activity` (one activity, every
learner) and `destination` (one destination). `domain/triage.py` sorts a whole course into
three symptoms: nothing syncing at all, only some activities, only some learners.
"""

from __future__ import annotations

from gradesync.domain.course_connection import sis_class_remedy
from gradesync.domain.diagnosis.activity import (
    BENIGN_SKIPS,
    ActivityDestinationFacts,
    ActivityFacts,
    KeyState,
    diagnose_activity,
    left_out_by_design,
)
from gradesync.domain.diagnosis.checks import (
    AGS_LINEITEM,
    AGS_SCORE,
    BY_DESIGN,
    LTI_KINDS,
    REMOTE_CAUSES,
    SIS_CAUSE_TITLES,
    Check,
    CheckCode,
    DeliveryFact,
    DestinationFacts,
    DestinationQueue,
    Diagnosis,
    LaunchFact,
    LearnerActivityFacts,
    OtherAccount,
    RejectionFact,
    credentials_fix,
    current_code,
    plural,
    remote_cause,
    when,
)
from gradesync.domain.diagnosis.destination import (
    DEPLOYMENT_CODES,
    DestinationDiagnosisFacts,
    ProbeStep,
    diagnose_destination,
)
from gradesync.domain.diagnosis.destination_checks import (
    COLUMN_CODES,
    STALLED_AFTER,
    PauseSaid,
    column_check,
    course_link_check,
    delivery_check,
    destination_ready_check,
    grade_scope_check,
    last_delivery_check,
    launch_check,
    lms_agrees_check,
    pause_said,
    pending_said,
    rate_limit_check,
)
from gradesync.domain.diagnosis.learner import (
    DELIBERATE,
    activity_checks,
    course_checks,
    diagnose_learner_activity,
)

__all__ = [
    "AGS_LINEITEM",
    "AGS_SCORE",
    "BENIGN_SKIPS",
    "BY_DESIGN",
    "COLUMN_CODES",
    "DELIBERATE",
    "DEPLOYMENT_CODES",
    "LTI_KINDS",
    "REMOTE_CAUSES",
    "SIS_CAUSE_TITLES",
    "STALLED_AFTER",
    "ActivityDestinationFacts",
    "ActivityFacts",
    "Check",
    "CheckCode",
    "DeliveryFact",
    "DestinationDiagnosisFacts",
    "DestinationFacts",
    "DestinationQueue",
    "Diagnosis",
    "KeyState",
    "LaunchFact",
    "LearnerActivityFacts",
    "OtherAccount",
    "PauseSaid",
    "ProbeStep",
    "RejectionFact",
    "activity_checks",
    "column_check",
    "course_checks",
    "course_link_check",
    "credentials_fix",
    "current_code",
    "delivery_check",
    "destination_ready_check",
    "diagnose_activity",
    "diagnose_destination",
    "diagnose_learner_activity",
    "grade_scope_check",
    "last_delivery_check",
    "launch_check",
    "left_out_by_design",
    "lms_agrees_check",
    "pause_said",
    "pending_said",
    "plural",
    "rate_limit_check",
    "remote_cause",
    "sis_class_remedy",
    "when",
]
