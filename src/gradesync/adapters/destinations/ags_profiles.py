"""Per-LMS behaviour of LTI 1.3 AGS platforms, as data rather than `if`s in the client.

Each profile says what the platform accepts (`Capabilities`, which policy uses to shape
results and names) and how the client must talk to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import ScoreForm
from gradesync.domain.names import PEARSON_FORBIDDEN_CHARS


@dataclass(frozen=True, slots=True)
class AgsProfile:
    name: str
    capabilities: Capabilities
    # Canvas: send {"new_submission": false} under its submission extension so an update is
    # not a new attempt (no "allowed attempts" rejections, no notification storm).
    canvas_submission_extension: bool = False
    # The platform refuses a score whose timestamp equals the last one (Moodle: 409), not
    # only an older one.
    rejects_equal_timestamps: bool = False
    # The platform answers a bad or expired token with 403 rather than 401 (Open edX): any
    # 403 gets one token refresh before it counts as a refusal.
    forbidden_means_token: bool = False
    # The platform answers a score it cannot take for one learner (an id it does not know)
    # with a server error (Open edX: 500): a 5xx on a score, while the line item still
    # answers, is that learner's failure, not the platform's.
    learner_errors_as_5xx: bool = False
    page_limit: int = 100
    notes: tuple[str, ...] = field(default_factory=tuple)


_GENERIC_CAPS = Capabilities(
    score_form=ScoreForm.POINTS,
    extra_credit=True,  # AGS allows scoreGiven > scoreMaximum
    comments=True,
    statuses=False,
    pending_results=True,
)

PROFILES: dict[str, AgsProfile] = {
    "generic": AgsProfile("generic", _GENERIC_CAPS),
    "canvas": AgsProfile(
        "canvas",
        Capabilities(
            score_form=ScoreForm.POINTS,
            extra_credit=True,
            comments=True,
            name_max_length=255,
            name_rules_from="Canvas",
            pending_results=True,
        ),
        canvas_submission_extension=True,
        notes=(
            "Canvas serves AGS from the school's domain: list it in allowed_hosts.",
            "Rate limiting comes back as 403 'Rate Limit Exceeded'.",
        ),
    ),
    "moodle": AgsProfile(
        "moodle",
        Capabilities(
            score_form=ScoreForm.POINTS,
            extra_credit=False,  # Moodle caps grades at the grade item's maximum
            comments=True,
            name_max_length=255,
            name_rules_from="Moodle",
            # Moodle stores no grade until a score is FullyGraded: a Pending score would
            # only blank the cell.
            pending_results=False,
        ),
        rejects_equal_timestamps=True,
        notes=("Moodle rejects a score whose timestamp is equal to the previous one (409).",),
    ),
    "brightspace": AgsProfile(
        "brightspace",
        Capabilities(
            score_form=ScoreForm.POINTS,
            extra_credit=True,
            comments=True,
            # grade item names break sync with these characters or past 128 characters
            name_max_length=128,
            forbidden_name_chars=PEARSON_FORBIDDEN_CHARS,
            name_rules_from="Brightspace",
            zeros_stored=False,
            pending_results=False,
        ),
        notes=(
            "Grade item names are limited to 128 characters, without "
            + " ".join(PEARSON_FORBIDDEN_CHARS)
            + "; a zero is not stored.",
        ),
    ),
    "openedx": AgsProfile(
        "openedx",
        Capabilities(
            score_form=ScoreForm.POINTS,
            # Open edX publishes min(scoreGiven, scoreMaximum): extra credit is capped by
            # policy, with the reason shown, rather than silently by the platform.
            extra_credit=False,
            comments=True,
            name_max_length=255,
            name_rules_from="Open edX",
            pending_results=False,  # only FullyGraded scores reach the gradebook
            integer_points=True,  # line items take an integer scoreMaximum (400 otherwise)
            # a score counts only on a line item whose resourceLinkId is the component's
            # usage id: a column is created only once a launch told which link it belongs to
            needs_resource_link=True,
        ),
        forbidden_means_token=True,
        learner_errors_as_5xx=True,
        notes=(
            "Grades count only on a line item whose resourceLinkId is the LTI component's "
            "usage id: learners (or staff) must launch gradesync from that component first.",
            "Line item points must be whole numbers: fractional points are rescaled.",
            "A bad or expired token is answered with 403; an unknown learner with 500.",
        ),
    ),
    "blackboard": AgsProfile(
        "blackboard",
        Capabilities(
            score_form=ScoreForm.POINTS,
            extra_credit=True,
            comments=True,
            pending_results=True,
        ),
    ),
    "schoology": AgsProfile(
        "schoology",
        Capabilities(
            score_form=ScoreForm.POINTS,
            extra_credit=False,
            comments=False,
            pending_results=False,
        ),
    ),
}


PROFILE_NAMES = tuple(PROFILES)


def profile_for(name: str | None) -> AgsProfile:
    """The profile called `name`; unknown names are refused at registration, so here they
    can only come from an old row and fall back to the generic profile."""
    return PROFILES.get(name or "generic", PROFILES["generic"])
